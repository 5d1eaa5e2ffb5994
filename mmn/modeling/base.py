"""The model contract: everything the engine, evaluation, prediction and plots know about a model.

A registered model subclasses ``GroundingModel`` and is built as ``cls(cfg)``. The shared layers
(``mmn/engine``, ``mmn/evaluation``, ``mmn/data``, ``mmn/predict.py``) call only what is defined here:

class level (no weights needed; the datasets and the config checks use them)
    ``check_config(cfg)``            raise ``ConfigError`` naming the keys of an impossible config
    ``build_dataset(cfg, entry, is_train)``  the dataset of a catalog entry, in the form the model reads
    ``build_query_batch(cfg, features, duration, sentences)``  one video's raw features + free sentences
                                     -> the batch the model reads (prediction)
    ``feature_dim(cfg)``             (size of a raw clip feature, the config key that sets it)
instance level
    ``supports_distributed``         whether training under torchrun is supported
    ``wrap_distributed(device)``     the module the trainer calls under torchrun (default: DDP)
    ``build_optimizer(cfg)``         (optimizer, scheduler); default: the official MMN AdamW + MultiStepLR
    ``set_epoch(epoch)``             epoch-dependent state (MMN freezes BERT), before each training epoch
    ``train_step(batch, optimizer, epoch, forward)``  one update; returns {"loss": float, ...}
    ``end_epoch(scheduler, record)`` after each epoch (default: ``scheduler.step()``)
    ``rank_moments(outputs, batch, topk)``  eval outputs -> ``RankedMoments`` (seconds, best first)

Datasets built by ``build_dataset`` provide ``collator()``, ``num_queries``, ``ann_file`` and, per
query in dataset order, ``query_moments()`` (Q x 2 seconds), ``query_durations()`` (Q float64),
``query_video_ids()`` and ``query_sentences()``. Their batches provide ``to(device, non_blocking)``
and ``query_indices`` (the dataset's query index of each output row).
"""
import contextlib
from dataclasses import dataclass
from typing import Optional

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP


@dataclass
class RankedMoments:
    """A model's answers for the queries of a batch, in the batch's query order."""

    moments: torch.Tensor                     # Q x k x 2 seconds, best first; NaN rows where fewer than k
    scores: torch.Tensor                      # Q x k; -inf where fewer than k
    score_maps: Optional[torch.Tensor] = None  # Q x N x N (CPU) for models that score a 2D moment map


class GroundingModel(nn.Module):
    """Base class of every registered temporal grounding model (see the module docstring)."""

    supports_distributed = True

    def __init__(self, cfg):
        super().__init__()
        self.amp = bool(cfg.MODEL.AMP)
        self.max_grad_norm = float(cfg.SOLVER.MAX_GRAD_NORM)

    # ------------------------------------------------------------------ config and data
    @classmethod
    def check_config(cls, cfg):
        """Raise ``mmn.config.ConfigError`` (naming the keys and the rule) when ``cfg`` cannot work."""

    @classmethod
    def build_dataset(cls, cfg, entry, is_train=False):
        """The dataset of catalog entry ``entry`` (``mmn.data.catalog.DatasetEntry``)."""
        raise NotImplementedError(f"{cls.__name__} must implement build_dataset")

    @classmethod
    def build_query_batch(cls, cfg, features, duration, sentences):
        """A batch of one video (raw ``features`` T x D float32, ``duration`` s) and its ``sentences``."""
        raise NotImplementedError(f"{cls.__name__} must implement build_query_batch")

    @classmethod
    def feature_dim(cls, cfg):
        """(feature size of one raw clip, the config key that sets it)."""
        raise NotImplementedError(f"{cls.__name__} must implement feature_dim")

    # ------------------------------------------------------------------ training
    def build_optimizer(self, cfg):
        """(optimizer, scheduler). Default: AdamW (torch's defaults) over every parameter at SOLVER.LR, and
        MultiStepLR at SOLVER.MILESTONES (gamma 0.1) stepped after each epoch (``end_epoch``)."""
        optimizer = torch.optim.AdamW(self.parameters(), lr=cfg.SOLVER.LR)
        return optimizer, torch.optim.lr_scheduler.MultiStepLR(optimizer, list(cfg.SOLVER.MILESTONES), gamma=0.1)

    def wrap_distributed(self, device):
        """The module the trainer calls under torchrun: DistributedDataParallel by default (rank 0's
        weights broadcast, gradients averaged). A model that updates otherwise returns itself and keeps
        its ranks in sync in its ``train_step``."""
        # parameters frozen for some epochs (MMN's BERT) get no gradient then
        return DDP(self, device_ids=[device.index] if device.type == "cuda" else None, broadcast_buffers=False,
                   find_unused_parameters=True)

    def set_epoch(self, epoch):
        """Epoch-dependent state, called before each training epoch (1-based)."""

    def train_step(self, batch, optimizer, epoch, forward=None):
        """One update: forward -> loss -> backward -> clip (SOLVER.MAX_GRAD_NORM) -> step.

        ``batch`` is a batch of the model's dataset or a list of such shards (SOLVER.NUM_SHARDS): then
        each shard's losses (and BatchNorm statistics) come from that shard alone and the gradient is
        the mean over shards, as DistributedDataParallel over that many processes computes it; the
        BatchNorm running statistics kept are the first shard's (those rank 0 saves under DDP).
        ``forward`` is the module to call for the forward pass (the DistributedDataParallel wrapper under
        torchrun, so that gradients are averaged); defaults to the model itself. Returns the losses as
        floats (means over shards); ``"loss"`` is the total.
        """
        from ..utils.speed import autocast

        forward = forward or self
        shards = batch if isinstance(batch, list) else [batch]
        optimizer.zero_grad(set_to_none=True)
        totals, first_shard_stats = {}, None
        for k, shard in enumerate(shards):
            # gradients are all-reduced once, with the last shard's backward
            last = k == len(shards) - 1
            with contextlib.nullcontext() if last or not isinstance(forward, DDP) else forward.no_sync():
                with autocast(self.amp, model_device(self)):
                    losses = forward(shard, epoch=epoch)
                (losses["loss"] / len(shards)).backward()
            if len(shards) > 1:
                first_shard_stats = keep_first_shard_stats(self, first_shard_stats)
            for key, value in losses.items():
                totals[key] = totals.get(key, 0.0) + float(value.detach()) / len(shards)
        if self.max_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(self.parameters(), self.max_grad_norm)
        optimizer.step()
        return totals

    def end_epoch(self, scheduler, record):
        """After each training epoch (``record``: the epoch's losses); default: step the schedule."""
        if scheduler is not None:
            scheduler.step()

    # ------------------------------------------------------------------ inference
    def rank_moments(self, outputs, batch, topk):
        """The eval-mode ``outputs`` of ``batch`` as ``RankedMoments`` with up to ``topk`` moments."""
        raise NotImplementedError(f"{type(self).__name__} must implement rank_moments")


def keep_first_shard_stats(model, saved):
    """After the first shard, remember the BatchNorm running statistics; after later ones, put them back.

    Put back by rebinding the buffers to copies, not in place: a forward whose backward is still to come
    holds the tensors it updated."""
    layers = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    names = ("running_mean", "running_var", "num_batches_tracked")
    if saved is None:
        return [[getattr(m, n).detach().clone() for n in names] for m in layers]
    for m, values in zip(layers, saved):
        for name, value in zip(names, values):
            setattr(m, name, value.clone())
    return saved


def model_device(model):
    """The device the model runs on (its first parameter's, else the CPU)."""
    for p in model.parameters():
        return p.device
    return torch.device("cpu")
