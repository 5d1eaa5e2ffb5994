"""The model contract: everything the engine, the evaluation, prediction and the plots know about a model.

A registered model subclasses ``GroundingModel`` and is built as ``cls(cfg)``. The shared layers
(``mmn/engine``, ``mmn/evaluation``, ``mmn/data``, ``mmn/predict.py``) call only what is defined here.

class level (no weights needed; the datasets and the config checks use them)
    ``check_config(cfg)``            raise ``ConfigError`` naming the keys of an impossible config
    ``build_dataset(cfg, entry, is_train)``  the ``GroundingDataset`` (mmn/data/dataset.py) of a catalog entry
    ``build_query_batch(cfg, features, duration, sentences)``  one video's raw features + free sentences
                                     -> the batch the model reads (prediction)
    ``feature_dim(cfg)``             (size of a raw clip feature, the config key that sets it)
instance level: the network
    ``forward(batch, epoch=1)``      training mode: a dict of scalar losses ("loss" the total, other keys
                                     starting with "loss" are logged); eval mode: the outputs
                                     ``rank_moments`` reads (a "loss" among them is logged by the engine
                                     as the split's mean loss, e.g. 2D-TAN's validation loss)
    ``rank_moments(outputs, batch, topk)``  eval outputs -> ``RankedMoments`` (seconds, best first)
instance level: training (the engine's ``run_step`` is the one loop that runs them)
    ``build_optimizer(cfg)``         (optimizer, scheduler); default: AdamW over every parameter + MultiStepLR
    ``update_phases()``              the backward/step phases of one update (``UpdatePhase``); default: one
    ``parameter_groups()``           {name: [parameters]} that phases name as ``trainable``
    ``training_inputs(batch)``       the inputs of the training forwards of a batch (one per shard)
    ``after_step(optimizer)``        after every update (per-update schedules)
    ``set_epoch(epoch)``             epoch-dependent state (MMN freezes BERT), before each training epoch
    ``end_epoch(scheduler, record)`` after each epoch and its evaluation (default: ``scheduler.step()``)
    ``max_grad_norm``                gradient clipping of every phase (SOLVER.MAX_GRAD_NORM; <= 0: none)
    ``supports_distributed``         whether training under torchrun is supported
    ``wrap_in_ddp``                  False: under torchrun the engine does not wrap the model in
                                     DistributedDataParallel but averages each phase's gradients itself

Batches (what a dataset's ``collator()`` makes) provide ``to(device, non_blocking)`` and ``query_indices``
(the dataset's query index of each output row of ``rank_moments``).

One update of ``run_step`` (mmn/engine/trainer.py), for each phase of ``update_phases()`` in order:
make only the phase's ``trainable`` group trainable; ``zero_grad`` its optimizer; forward each input of
``training_inputs(batch)`` (again, or reuse the previous phase's outputs when ``new_forward`` is False)
and back-propagate ``outputs[phase.loss] / number of inputs``; average the gradients over processes when
the model is not wrapped in DDP; clip every parameter's gradient norm to ``max_grad_norm``; step the
phase's optimizer. Then the parameters' trainable flags are restored and ``after_step`` runs. The step's
log is every phase's outputs (a key from the first phase that returns it), with "loss" the sum of the
phases' back-propagated losses.
"""
from dataclasses import dataclass
from typing import Optional

import torch
from torch import nn


@dataclass
class RankedMoments:
    """A model's answers for the queries of a batch, in the batch's query order."""

    moments: torch.Tensor                     # Q x k x 2 seconds, best first; NaN rows where fewer than k
    scores: torch.Tensor                      # Q x k; -inf where fewer than k
    score_maps: Optional[torch.Tensor] = None  # Q x N x N (CPU) for models that score a 2D moment map


@dataclass(frozen=True)
class UpdatePhase:
    """One backward/step of a training update (``GroundingModel.update_phases``).

    ``name``: given to the training forward as ``phase=name`` (None: no ``phase`` argument);
    ``loss``: the key of the forward's outputs that is back-propagated;
    ``trainable``: the group of ``parameter_groups()`` left trainable in this phase (None: all, as they are);
    ``optimizer``: the optimizer that steps, ``optimizer[key]`` of what ``build_optimizer`` returned (None: that
    optimizer itself); ``new_forward``: run the forward again (False: back-propagate the previous phase's
    outputs, whose graph is then kept).
    """

    name: Optional[str] = None
    loss: str = "loss"
    trainable: Optional[str] = None
    optimizer: Optional[str] = None
    new_forward: bool = True


class GroundingModel(nn.Module):
    """Base class of every registered temporal grounding model (see the module docstring)."""

    supports_distributed = True
    wrap_in_ddp = True

    def __init__(self, cfg):
        super().__init__()
        self.max_grad_norm = float(cfg.SOLVER.MAX_GRAD_NORM)

    # ------------------------------------------------------------------ config and data
    @classmethod
    def check_config(cls, cfg):
        """Raise ``mmn.utils.errors.ConfigError`` (naming the keys and the rule) when ``cfg`` cannot work."""

    @classmethod
    def build_dataset(cls, cfg, entry, is_train=False):
        """The ``GroundingDataset`` of catalog entry ``entry`` (``mmn.data.catalog.DatasetEntry``)."""
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

    def update_phases(self):
        """The phases of one update, in order (``UpdatePhase``); default: one phase, "loss" over everything."""
        return (UpdatePhase(),)

    def parameter_groups(self):
        """{group name: [parameters]}: the groups that update phases name as ``trainable``."""
        return {}

    def training_inputs(self, batch):
        """The inputs of the training forwards of one batch. A batch split into shards (a list: the loader's
        ``ShardedBatch``, SOLVER.NUM_SHARDS) gives one forward per shard: each shard's losses (and BatchNorm
        statistics) come from that shard alone and the gradient is the mean over shards, as DDP over that
        many processes computes it (the BatchNorm running statistics kept are the first shard's)."""
        return list(batch) if isinstance(batch, list) else [batch]

    def after_step(self, optimizer):
        """After every update (all phases): per-update learning-rate schedules."""

    def set_epoch(self, epoch):
        """Epoch-dependent state, called before each training epoch (1-based)."""

    def end_epoch(self, scheduler, record):
        """After each training epoch and its evaluation: ``record`` holds the epoch's mean losses, "lr", and
        per evaluated split ("val", "test") its recall table and, when the eval outputs carry one, its mean
        "loss". Default: step the schedule."""
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
