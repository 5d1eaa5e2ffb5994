"""The training loop: epochs of the official schedule, evaluation, checkpoints, metrics log."""
import json
import logging
import math
import os
import time

import torch
from tqdm import tqdm

from ..utils import comm
from ..utils.checkpoint import Checkpointer, atomic_write_text
from ..utils.seed import get_rng_state
from .inference import evaluate, recall_sum

logger = logging.getLogger("mmn.trainer")
METRICS_FILE = "metrics.jsonl"


def _reduce_mean(values, device):
    """Average scalar losses over ranks, for logging only."""
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    if comm.get_world_size() > 1:
        torch.distributed.all_reduce(tensor)
        tensor /= comm.get_world_size()
    return tensor.tolist()


def train_one_epoch(model, loader, optimizer, epoch, device):
    """One epoch of ``module.train_step`` (the model contract's update); returns the mean of each loss term.

    ``model`` is the model or its DistributedDataParallel wrapper, whose forward the step calls so that
    gradients are averaged over processes.
    """
    module = getattr(model, "module", model)
    module.set_epoch(epoch)
    model.train()
    sums, count = {}, 0
    progress = tqdm(loader, desc=f"epoch {epoch}", disable=not comm.is_main_process(), leave=False)
    for batch in progress:
        batch = batch.to(device, non_blocking=True)
        losses = {k: v for k, v in module.train_step(batch, optimizer, epoch, forward=model).items()
                  if k.startswith("loss")}
        if not math.isfinite(losses["loss"]):
            raise FloatingPointError(f"epoch {epoch}: loss is {losses['loss']} on items {batch_items(batch)}")
        names = sorted(losses)
        values = _reduce_mean([losses[k] for k in names], device)
        for k, v in zip(names, values):
            sums[k] = sums.get(k, 0.0) + v
        count += 1
        progress.set_postfix(loss=f"{values[names.index('loss')]:.4f}")
    return {k: v / max(count, 1) for k, v in sums.items()}


def batch_items(batch):
    """The dataset query indices of a batch, for error messages."""
    return batch.query_indices.tolist()


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
             val_loader=None, pending=None):
    """Train from ``start_epoch`` to SOLVER.MAX_EPOCH (1-based, inclusive).

    After each epoch: ``end_epoch`` (the schedule), save ``model_{epoch}e.pth`` (every CHECKPOINT_PERIOD
    epochs and at the last one) BEFORE evaluating, so that a failing evaluation never loses the trained
    epoch; evaluate every TEST_PERIOD epochs from SKIP_TEST on; keep ``best_<dataset>.pth`` (highest sum
    of the recall table on ``val_loader`` when given, else on ``test_loader``); append the epoch's
    record to metrics.jsonl. ``pending``: the record of a resumed epoch whose evaluation and metrics
    line had not been written (the run stopped after its checkpoint), finished first.
    """
    checkpointer = Checkpointer(cfg.OUTPUT_DIR, cfg)
    best = dict(best or {"score": -math.inf, "epoch": None})
    max_epoch = cfg.SOLVER.MAX_EPOCH
    module = getattr(model, "module", model)
    if pending is not None:
        best = _finish_epoch(cfg, model, checkpointer, pending, best, test_loader, val_loader, device,
                             optimizer, scheduler)
    for epoch in range(start_epoch, max_epoch + 1):
        train_loader.sampler.set_epoch(epoch)
        start = time.time()
        lrs = [g["lr"] for g in optimizer.param_groups]
        losses = train_one_epoch(model, train_loader, optimizer, epoch, device)
        record = {"epoch": epoch, "time_s": round(time.time() - start, 3), **losses, "lr": lrs}
        module.end_epoch(scheduler, record)
        logger.info("epoch %d/%d: %s (%.1f s)", epoch, max_epoch,
                    ", ".join(f"{k} {v:.4f}" for k, v in losses.items()), record["time_s"])
        if epoch % cfg.SOLVER.CHECKPOINT_PERIOD == 0 or epoch == max_epoch:
            # every rank goes on with the buffers (BatchNorm statistics) rank 0 saves, as a resumed run does
            comm.broadcast_module(module, buffers_only=True)
            rng = comm.all_gather_objects(get_rng_state())  # every rank's, so that each resumes its own stream
            if comm.is_main_process():
                checkpointer.save(f"model_{epoch}e.pth", model=model, optimizer=optimizer, scheduler=scheduler,
                                  epoch=epoch, best=best, last=True, record=record,
                                  rng=rng if len(rng) > 1 else rng[0])
        comm.synchronize()
        best = _finish_epoch(cfg, model, checkpointer, record, best, test_loader, val_loader, device,
                             optimizer, scheduler)
    return best


def _finish_epoch(cfg, model, checkpointer, record, best, test_loader, val_loader, device, optimizer, scheduler):
    """Evaluate a trained epoch when due, keep the best checkpoint, append the record; returns the best."""
    epoch = record["epoch"]
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
        if is_best:
            checkpointer.save(f"best_{cfg.DATASETS.NAME}.pth", model=model, optimizer=optimizer, scheduler=scheduler,
                              epoch=epoch, best=best)
        metrics_file = os.path.join(cfg.OUTPUT_DIR, METRICS_FILE)
        with open(metrics_file, "a") as f:
            f.write(json.dumps(record) + "\n")
        _plot_curves(metrics_file, os.path.join(cfg.OUTPUT_DIR, "training_curves.png"))
        _tensorboard_log(cfg.OUTPUT_DIR, record)
    comm.synchronize()
    return best


def read_metrics(output_dir):
    """The records of OUTPUT_DIR/metrics.jsonl (empty when there is none)."""
    path = os.path.join(output_dir, METRICS_FILE)
    if not os.path.isfile(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def truncate_metrics(output_dir, last_epoch):
    """Keep the metrics.jsonl records of epochs <= ``last_epoch`` (a resumed run rewrites what follows)."""
    records = read_metrics(output_dir)
    kept = [r for r in records if r["epoch"] <= last_epoch]
    if len(kept) != len(records):
        atomic_write_text("".join(json.dumps(r) + "\n" for r in kept), os.path.join(output_dir, METRICS_FILE))
    return kept
