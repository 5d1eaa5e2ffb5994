"""The training loop: epochs of the official schedule, evaluation, checkpoints, metrics log."""
import json
import logging
import math
import os
import time

import torch
from tqdm import tqdm

from ..utils import comm
from ..utils.checkpoint import Checkpointer
from ..utils.speed import autocast
from .inference import evaluate, recall_sum

logger = logging.getLogger("mmn.trainer")


def _reduce_mean(values, device):
    """Average scalar losses over ranks, for logging only."""
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    if comm.get_world_size() > 1:
        torch.distributed.all_reduce(tensor)
        tensor /= comm.get_world_size()
    return tensor.tolist()


def train_one_epoch(model, loader, optimizer, epoch, device, max_grad_norm, amp=False):
    """One epoch; returns the mean of each loss term over its iterations."""
    module = getattr(model, "module", model)
    module.set_epoch(epoch)
    model.train()
    sums, count = {}, 0
    progress = tqdm(loader, desc=f"epoch {epoch}", disable=not comm.is_main_process(), leave=False)
    for batch in progress:
        batch = batch.to(device, non_blocking=True)
        if hasattr(module, "train_step"):  # the model owns its update (CNM alternates two optimisers)
            losses = {k: v for k, v in module.train_step(batch, optimizer).items() if k.startswith("loss")}
        else:
            with autocast(amp, device):
                losses = model(batch, epoch=epoch)
            optimizer.zero_grad(set_to_none=True)
            losses["loss"].backward()
            if max_grad_norm > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
            optimizer.step()
            losses = {k: v.item() for k, v in losses.items()}
        if not math.isfinite(losses["loss"]):
            raise FloatingPointError(f"epoch {epoch}: loss is {losses['loss']} on items {batch.indices.tolist()}")
        names = sorted(losses)
        values = _reduce_mean([losses[k] for k in names], device)
        for k, v in zip(names, values):
            sums[k] = sums.get(k, 0.0) + v
        count += 1
        progress.set_postfix(loss=f"{values[names.index('loss')]:.4f}")
    return {k: v / max(count, 1) for k, v in sums.items()}


def _plot_curves(metrics_file, png):
    try:
        from ..visualization import plot_training_curves

        plot_training_curves(metrics_file, png)
    except ImportError:
        logger.debug("matplotlib not installed: no training_curves.png")


_TB_WRITERS = {}


def _tensorboard_log(output_dir, record):
    """Scalars to OUTPUT_DIR/tensorboard when the tensorboard package is installed (optional)."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return
    writer = _TB_WRITERS.get(output_dir)
    if writer is None:
        writer = _TB_WRITERS[output_dir] = SummaryWriter(os.path.join(output_dir, "tensorboard"))
    for key, value in record.items():
        if key.startswith("loss"):
            writer.add_scalar(f"train/{key}", value, record["epoch"])
    for split in ("val", "test"):
        for key, value in record.get(split, {}).items():
            writer.add_scalar(f"{split}/{key}", value, record["epoch"])
    writer.flush()


def do_train(cfg, model, train_loader, test_loader, optimizer, scheduler, device, start_epoch=1, best=None,
             val_loader=None):
    """Train from ``start_epoch`` to SOLVER.MAX_EPOCH (1-based, inclusive).

    After each epoch: step the schedule, evaluate every TEST_PERIOD epochs from SKIP_TEST on, keep
    ``best_<dataset>.pth`` (highest sum of the recall table on ``val_loader`` when given, else on
    ``test_loader``), save ``model_{epoch}e.pth`` every CHECKPOINT_PERIOD epochs and at the last one,
    and append the epoch's metrics to metrics.jsonl.
    """
    checkpointer = Checkpointer(cfg.OUTPUT_DIR, cfg)
    best = dict(best or {"score": -math.inf, "epoch": None})
    max_epoch = cfg.SOLVER.MAX_EPOCH
    for epoch in range(start_epoch, max_epoch + 1):
        train_loader.sampler.set_epoch(epoch)
        start = time.time()
        lrs = [g["lr"] for g in optimizer.param_groups] if hasattr(optimizer, "param_groups") else optimizer.lr
        losses = train_one_epoch(model, train_loader, optimizer, epoch, device, cfg.SOLVER.MAX_GRAD_NORM,
                                 amp=cfg.MODEL.AMP)
        if scheduler is not None:
            scheduler.step()
        record = {"epoch": epoch, "time_s": round(time.time() - start, 3), **losses, "lr": lrs}
        logger.info("epoch %d/%d: %s (%.1f s)", epoch, max_epoch,
                    ", ".join(f"{k} {v:.4f}" for k, v in losses.items()), record["time_s"])
        due = cfg.SOLVER.TEST_PERIOD > 0 and epoch % cfg.SOLVER.TEST_PERIOD == 0 and epoch >= cfg.SOLVER.SKIP_TEST
        is_best = False
        if due:
            for split, loader in (("val", val_loader), ("test", test_loader)):
                if loader is not None:
                    record[split], _, _ = evaluate(cfg, model, loader, device)
        selection = record.get("val", record.get("test"))
        if selection is not None:
            score = recall_sum(selection)
            if score > best["score"]:
                best = {"score": score, "epoch": epoch}
                is_best = True
        if comm.is_main_process():
            state = dict(model=model, optimizer=optimizer, scheduler=scheduler, epoch=epoch, best=best)
            if is_best:
                checkpointer.save(f"best_{cfg.DATASETS.NAME}.pth", **state)
            if epoch % cfg.SOLVER.CHECKPOINT_PERIOD == 0 or epoch == max_epoch:
                checkpointer.save(f"model_{epoch}e.pth", last=True, **state)
            metrics_file = os.path.join(cfg.OUTPUT_DIR, "metrics.jsonl")
            with open(metrics_file, "a") as f:
                f.write(json.dumps(record) + "\n")
            _plot_curves(metrics_file, os.path.join(cfg.OUTPUT_DIR, "training_curves.png"))
            _tensorboard_log(cfg.OUTPUT_DIR, record)
        comm.synchronize()
    return best
