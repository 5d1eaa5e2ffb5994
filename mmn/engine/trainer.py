"""Training: the one training step (``run_step``), the epoch loop of the official schedule with its
evaluation, checkpoints and metrics log (``do_train``), and ``train``, which builds everything for them."""
import contextlib
import json
import logging
import math
import os
import time

import torch
from torch.nn.parallel import DistributedDataParallel as DDP
from tqdm import tqdm

from ..data import make_data_loader
from ..data.loader import num_shards
from ..modeling import build_dataset, build_model
from ..modeling.base import keep_first_shard_stats, model_device
from ..modeling.global_batch_norm import convert_to_global_batch_norm
from ..utils import comm
from ..utils.checkpoint import Checkpointer, atomic_write_text, load_model_weights
from ..utils.comm import unwrap_model
from ..utils.errors import ConfigError
from ..utils.seed import get_rng_state, seed_everything
from ..utils.speed import apply_speed_options, autocast
from .inference import evaluate, recall_sum
from .output_dir import METRICS_FILE, check_output_dir

logger = logging.getLogger("mmn.trainer")



# ---------------------------------------------------------------------------------------------- one update
def run_step(model, batch, optimizer, epoch=1, amp=False):
    """One training update of ``model`` (a ``GroundingModel`` or its DistributedDataParallel wrapper) on
    ``batch``: the only place with zero_grad / forward / backward / clip / step (detectron2's
    ``SimpleTrainer.run_step``).

    For each of the model's ``update_phases()``: only the phase's ``trainable`` group trainable; zero_grad of
    the phase's optimizer; per input of ``training_inputs(batch)`` (the shards of SOLVER.NUM_SHARDS) the
    forward under ``amp`` autocast (a new one, or the previous phase's outputs) and the backward of the
    phase's loss / number of inputs, DDP synchronising on the last one only; the BatchNorm running
    statistics of the first shard kept; gradients averaged over processes when the model is not wrapped in
    DDP; every gradient clipped to the model's ``max_grad_norm``; the optimizer's step. Then the trainable
    flags are restored and ``after_step`` runs. Returns the losses as floats (means over inputs; "loss" is
    the sum of the phases' back-propagated losses).

    A forward shared by several phases (``new_forward`` False) runs with the union of their trainable groups
    and each phase back-propagates into its own group only; its graph must not pass through parameters an
    earlier phase has stepped (torch then refuses the backward), and DDP's reducer takes one backward per
    forward, so such phases need ``wrap_in_ddp`` False.
    """
    module = unwrap_model(model)
    inputs = module.training_inputs(batch)
    phases = list(module.update_phases())
    params = list(module.parameters())
    trainable = [p.requires_grad for p in params]
    groups = module.parameter_groups() if any(phase.trainable is not None for phase in phases) else {}
    shared = any(not phase.new_forward for phase in phases[1:])
    if shared and isinstance(model, DDP):
        raise ValueError(f"{type(module).__name__}: update phases that share a forward need wrap_in_ddp = False")
    average_here = comm.get_world_size() > 1 and not isinstance(model, DDP)
    device = model_device(module)
    logs, total, outputs = {}, 0.0, None

    def group_ids(names):
        """The parameters left trainable for the phases ``names`` (None: all, as they are)."""
        if any(name is None for name in names):
            return None
        return {id(p) for name in names for p in groups[name]}

    try:
        for index, phase in enumerate(phases):
            new_forward = index == 0 or phase.new_forward
            # the phases that back-propagate this forward: this one and the following ones that reuse it
            sharing = [phase]
            for later in phases[index + 1:] if new_forward else ():
                if later.new_forward:
                    break
                sharing.append(later)
            if new_forward:
                keep = group_ids([ph.trainable for ph in sharing])
                if keep is not None or len(sharing) > 1:
                    for p, was in zip(params, trainable):
                        p.requires_grad_(was and (keep is None or id(p) in keep))
            own = group_ids([phase.trainable])
            # a forward shared by several phases: each back-propagates into its own group only
            backward_inputs = None
            if shared and own is not None:
                backward_inputs = [p for p in params if id(p) in own and p.requires_grad]
            phase_optimizer = optimizer if phase.optimizer is None else optimizer[phase.optimizer]
            phase_optimizer.zero_grad(set_to_none=True)
            retain = index + 1 < len(phases) and not phases[index + 1].new_forward
            kwargs = {"epoch": epoch} if phase.name is None else {"epoch": epoch, "phase": phase.name}
            if new_forward:
                outputs = [None] * len(inputs)
            phase_logs, first_shard_stats = {}, None
            for k, item in enumerate(inputs):
                # gradients are all-reduced once, with the last input's backward
                last = k == len(inputs) - 1
                with contextlib.nullcontext() if last or not isinstance(model, DDP) else model.no_sync():
                    if new_forward:
                        with autocast(amp, device):
                            outputs[k] = model(item, **kwargs)
                    (outputs[k][phase.loss] / len(inputs)).backward(retain_graph=retain, inputs=backward_inputs)
                if new_forward and len(inputs) > 1:
                    first_shard_stats = keep_first_shard_stats(module, first_shard_stats)
                for key, value in outputs[k].items():
                    phase_logs[key] = phase_logs.get(key, 0.0) + float(value.detach()) / len(inputs)
            if average_here:
                comm.average_gradients(params)  # every process takes the same step
            if module.max_grad_norm > 0:
                torch.nn.utils.clip_grad_norm_(params, module.max_grad_norm)
            phase_optimizer.step()
            for key, value in phase_logs.items():
                logs.setdefault(key, value)
            total += phase_logs[phase.loss]
    finally:
        for p, was in zip(params, trainable):
            p.requires_grad_(was)
    module.after_step(optimizer)
    logs["loss"] = total
    return logs


def wrap_model(model, device):
    """The module the trainer calls under torchrun: the model in DistributedDataParallel (rank 0's weights
    broadcast, gradients averaged), or, for a model with ``wrap_in_ddp`` False, the model itself with rank
    0's weights (``run_step`` averages its gradients). In one process: the model."""
    if comm.get_world_size() == 1:
        return model
    if not model.wrap_in_ddp:
        comm.broadcast_module(model)
        return model
    # parameters frozen for some epochs (a pretrained text encoder) get no gradient then
    return DDP(model, device_ids=[device.index] if device.type == "cuda" else None, broadcast_buffers=False,
               find_unused_parameters=True)


# ---------------------------------------------------------------------------------------------- epochs
def _reduce_mean(values, device):
    """Average scalar losses over ranks, for logging only."""
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    if comm.get_world_size() > 1:
        torch.distributed.all_reduce(tensor)
        tensor /= comm.get_world_size()
    return tensor.tolist()


def train_one_epoch(model, loader, optimizer, epoch, device, amp=False):
    """One epoch of ``run_step``; returns the mean of each loss term over the epoch's updates.

    ``model`` is the model or its DistributedDataParallel wrapper (``wrap_model``).
    """
    module = unwrap_model(model)
    module.set_epoch(epoch)
    model.train()
    sums, count = {}, 0
    progress = tqdm(loader, desc=f"epoch {epoch}", disable=not comm.is_main_process(), leave=False)
    for batch in progress:
        batch = batch.to(device, non_blocking=True)
        losses = {k: v for k, v in run_step(model, batch, optimizer, epoch, amp).items() if k.startswith("loss")}
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


class TensorBoardLog:
    """Scalars of every epoch record to OUTPUT_DIR/tensorboard when the tensorboard package is installed
    (optional); one writer per training run, closed when the run ends."""

    def __init__(self, output_dir):
        self.output_dir, self.writer = output_dir, None

    def log(self, record):
        if self.writer is None:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                return
            self.writer = SummaryWriter(os.path.join(self.output_dir, "tensorboard"))
        for key, value in record.items():
            if key.startswith("loss"):
                self.writer.add_scalar(f"train/{key}", value, record["epoch"])
        for split in ("val", "test"):
            for key, value in record.get(split, {}).items():
                self.writer.add_scalar(f"{split}/{key}", value, record["epoch"])
        self.writer.flush()

    def close(self):
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def _plot_curves(metrics_file, png):
    try:
        from ..visualization import plot_training_curves

        plot_training_curves(metrics_file, png)
    except ImportError:
        logger.debug("matplotlib not installed: no training_curves.png")


def do_train(cfg, model, train_loader, test_loader, optimizer, scheduler, device, start_epoch=1, best=None,
             val_loader=None, pending=None):
    """Train from ``start_epoch`` to SOLVER.MAX_EPOCH (1-based, inclusive).

    After each epoch: save ``model_{epoch}e.pth`` (every CHECKPOINT_PERIOD epochs and at the last one) BEFORE
    evaluating, so that a failing evaluation never loses the trained epoch (the checkpoint holds the
    schedule before the epoch's ``end_epoch``); evaluate every TEST_PERIOD epochs from SKIP_TEST on (each
    split's recall table and, for models whose eval outputs carry one, its mean loss); ``end_epoch`` with
    that record (the schedule; a plateau schedule reads the validation loss); keep ``best_<dataset>.pth``
    (highest sum of the recall table on ``val_loader`` when given, else on ``test_loader``); append the
    record to metrics.jsonl. ``pending``: (record, whether its ``end_epoch`` already ran) of a resumed epoch
    whose evaluation and metrics line had not been written (the run stopped after its checkpoint), finished
    first.
    """
    checkpointer = Checkpointer(cfg.OUTPUT_DIR, cfg)
    best = dict(best or {"score": -math.inf, "epoch": None})
    max_epoch = cfg.SOLVER.MAX_EPOCH
    module = unwrap_model(model)
    board = TensorBoardLog(cfg.OUTPUT_DIR)
    finish = dict(cfg=cfg, model=model, checkpointer=checkpointer, test_loader=test_loader, val_loader=val_loader,
                  device=device, optimizer=optimizer, scheduler=scheduler, board=board)
    try:
        if pending is not None:
            record, end_epoch_done = pending
            best = _finish_epoch(record, best, run_end_epoch=not end_epoch_done, **finish)
        for epoch in range(start_epoch, max_epoch + 1):
            train_loader.sampler.set_epoch(epoch)
            start = time.time()
            lrs = [g["lr"] for g in optimizer.param_groups]
            losses = train_one_epoch(model, train_loader, optimizer, epoch, device, amp=cfg.MODEL.AMP)
            record = {"epoch": epoch, "time_s": round(time.time() - start, 3), **losses, "lr": lrs}
            logger.info("epoch %d/%d: %s (%.1f s)", epoch, max_epoch,
                        ", ".join(f"{k} {v:.4f}" for k, v in losses.items()), record["time_s"])
            if epoch % cfg.SOLVER.CHECKPOINT_PERIOD == 0 or epoch == max_epoch:
                # every rank goes on with the buffers (BatchNorm statistics) rank 0 saves, as a resumed run does
                comm.broadcast_module(module, buffers_only=True)
                rng = comm.all_gather_objects(get_rng_state())  # every rank's, so that each resumes its own stream
                if comm.is_main_process():
                    checkpointer.save(f"model_{epoch}e.pth", model=model, optimizer=optimizer, scheduler=scheduler,
                                      epoch=epoch, best=best, last=True, record=record,
                                      rng=rng if len(rng) > 1 else rng[0], end_epoch_done=False)
            comm.synchronize()
            best = _finish_epoch(record, best, **finish)
    finally:
        board.close()
    return best


def select_best(best, record):
    """``best`` updated with ``record``'s selection table (val when evaluated, else test): (best, improved)."""
    selection = record.get("val", record.get("test"))
    if selection is not None:
        score = recall_sum(selection)
        if score > best["score"]:
            return {"score": score, "epoch": record["epoch"]}, True
    return best, False


def _finish_epoch(record, best, cfg, model, checkpointer, test_loader, val_loader, device, optimizer, scheduler,
                  board, run_end_epoch=True):
    """Evaluate a trained epoch when due, ``end_epoch``, keep the best checkpoint, append the record; returns
    the best."""
    epoch = record["epoch"]
    due = cfg.SOLVER.TEST_PERIOD > 0 and epoch % cfg.SOLVER.TEST_PERIOD == 0 and epoch >= cfg.SOLVER.SKIP_TEST
    if due:
        for split, loader in (("val", val_loader), ("test", test_loader)):
            if loader is not None:
                record[split], _, _ = evaluate(cfg, model, loader, device)
    if run_end_epoch:
        unwrap_model(model).end_epoch(scheduler, record)
    best, is_best = select_best(best, record)
    if comm.is_main_process():
        if is_best:
            checkpointer.save(f"best_{cfg.DATASETS.NAME}.pth", model=model, optimizer=optimizer, scheduler=scheduler,
                              epoch=epoch, best=best)
        metrics_file = os.path.join(cfg.OUTPUT_DIR, METRICS_FILE)
        with open(metrics_file, "a") as f:
            f.write(json.dumps(record) + "\n")
        _plot_curves(metrics_file, os.path.join(cfg.OUTPUT_DIR, "training_curves.png"))
        board.log(record)
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


# ---------------------------------------------------------------------------------------------- a run
def _eval_loader(cfg, splits):
    """Loader over the first split of ``splits`` (DATASETS.TEST or DATASETS.VAL); None when empty."""
    return make_data_loader(cfg, build_dataset(cfg, splits[0]), is_train=False) if splits else None


def train(cfg, device, resume=None, overwrite=False):
    """Build everything and train; returns the best {score, epoch}. ``resume``: None, "last" or a path.

    A new run refuses an OUTPUT_DIR that holds another run (``overwrite`` replaces it). Every dataset is
    built, and so checked, before the first training step.
    """
    if resume is None and cfg.SOLVER.RESUME:
        resume = "last"
    check_output_dir(cfg.OUTPUT_DIR, resume, overwrite)
    seed_everything(cfg.SEED + comm.get_rank())  # the initial weights depend on SEED alone (a resume restores the RNG)
    model = build_model(cfg)
    world = comm.get_world_size()
    if world > 1 and not model.supports_distributed:
        raise ConfigError(f"MODEL.ARCHITECTURE {cfg.MODEL.ARCHITECTURE!r} trains in one process only: "
                          "run train_net.py without torchrun")
    if num_shards(cfg) > world and cfg.MODEL.SYNC_BN:
        raise ConfigError(f"MODEL.SYNC_BN normalises over the whole batch, which SOLVER.NUM_SHARDS "
                          f"{cfg.SOLVER.NUM_SHARDS} would split in each of the {world} processes: set "
                          f"SOLVER.NUM_SHARDS 0 (one shard per process)")
    if cfg.MODEL.SYNC_BN:
        convert_to_global_batch_norm(model)
    if cfg.MODEL.WEIGHT:
        load_model_weights(model, cfg.MODEL.WEIGHT)
    model = apply_speed_options(model, cfg, device)
    optimizer, scheduler = model.build_optimizer(cfg)
    start_epoch, best, pending = 1, None, None
    if resume is not None:
        checkpointer = Checkpointer(cfg.OUTPUT_DIR, cfg)
        path = checkpointer.last_checkpoint() if resume == "last" else resume
        if path is None:
            raise ConfigError(f"{cfg.OUTPUT_DIR}/last_checkpoint: nothing to resume from")
        start_epoch, best, record, end_epoch_done = checkpointer.resume(path, model, optimizer, scheduler)
        finished = [r for r in read_metrics(cfg.OUTPUT_DIR) if r["epoch"] == start_epoch - 1]
        comm.synchronize()
        if comm.is_main_process():
            truncate_metrics(cfg.OUTPUT_DIR, start_epoch - 1)  # epochs after the checkpoint are redone
        if finished:
            # the epoch was evaluated and logged after its checkpoint: replay what followed the save
            if not end_epoch_done:
                model.end_epoch(scheduler, finished[-1])
            best, _ = select_best(dict(best or {"score": -math.inf, "epoch": None}), finished[-1])
        elif record is not None:
            pending = (record, end_epoch_done)  # stopped between the epoch's checkpoint and its evaluation
    train_set = build_dataset(cfg, cfg.DATASETS.TRAIN[0], is_train=True)
    train_loader = make_data_loader(cfg, train_set, is_train=True)
    test_loader, val_loader = _eval_loader(cfg, cfg.DATASETS.TEST), _eval_loader(cfg, cfg.DATASETS.VAL)
    model = wrap_model(model, device)
    return do_train(cfg, model, train_loader, test_loader, optimizer, scheduler, device, start_epoch, best,
                    val_loader=val_loader, pending=pending)
