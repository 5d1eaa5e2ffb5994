"""Data loaders from a config: per-epoch shuffling, the global batch split over processes and shards."""
import random

import numpy as np
import torch

from ..utils import comm
from ..utils.errors import ConfigError
from .samplers import EpochShuffleSampler


def _seed_worker(worker_id):
    seed = torch.initial_seed() % 2 ** 32  # set per worker by the loader's seeded generator
    np.random.seed(seed)
    random.seed(seed)


def num_shards(cfg):
    """SOLVER.NUM_SHARDS, the number of shards the global training batch is split into (0: one per process);
    a multiple of the number of processes that divides SOLVER.BATCH_SIZE."""
    world = comm.get_world_size()
    shards = cfg.SOLVER.NUM_SHARDS or world
    if shards % world:
        raise ConfigError(f"SOLVER.NUM_SHARDS {shards} is not a multiple of the {world} processes")
    if cfg.SOLVER.BATCH_SIZE % shards:
        raise ConfigError(f"SOLVER.BATCH_SIZE {cfg.SOLVER.BATCH_SIZE} is not divisible by the {shards} shards "
                          "(SOLVER.NUM_SHARDS, or the number of processes)")
    return shards


class ShardedBatch(list):
    """A process's training batch as its shards (each one a batch of the dataset's own kind)."""

    def to(self, device, non_blocking=False):
        return ShardedBatch(shard.to(device, non_blocking=non_blocking) for shard in self)

    @property
    def query_indices(self):
        return torch.cat([shard.query_indices for shard in self])


class ShardedCollate:
    """Collate items into ``count`` shards, shard m holding items m, m + count, ... : exactly the items
    that process m of a ``count``-process run would get from ``EpochShuffleSampler``."""

    def __init__(self, collate, count):
        self.collate, self.count = collate, count

    def __call__(self, items):
        return ShardedBatch(self.collate(items[m::self.count]) for m in range(self.count) if items[m::self.count])


def make_data_loader(cfg, dataset, is_train, collate_fn=None):
    """Loader over ``dataset``: training shuffles per epoch (call ``loader.sampler.set_epoch``), the test
    split is never shuffled. SOLVER.BATCH_SIZE / TEST.BATCH_SIZE are global and split across ranks; a
    training batch is further split into SOLVER.NUM_SHARDS / processes shards (``ShardedBatch``).
    ``collate_fn`` defaults to the dataset's ``collator()``."""
    world, rank = comm.get_world_size(), comm.get_rank()
    batch = cfg.SOLVER.BATCH_SIZE if is_train else cfg.TEST.BATCH_SIZE
    if batch % world:
        raise ConfigError(f"{'SOLVER' if is_train else 'TEST'}.BATCH_SIZE {batch} is not divisible by the "
                          f"{world} processes")
    shards = num_shards(cfg) if is_train else world
    collate_fn = collate_fn or dataset.collator()
    if shards > world:
        collate_fn = ShardedCollate(collate_fn, shards // world)
    # padded to a multiple of the shard count, as a DistributedSampler over that many processes would be
    sampler = EpochShuffleSampler(len(dataset), shuffle=is_train, seed=cfg.SEED, rank=rank, world_size=world,
                                  pad_to=shards)
    generator = torch.Generator()
    generator.manual_seed(cfg.SEED + rank)
    return torch.utils.data.DataLoader(
        dataset,
        batch_size=batch // world,
        sampler=sampler,
        drop_last=False,
        num_workers=cfg.DATALOADER.NUM_WORKERS,
        collate_fn=collate_fn,
        worker_init_fn=_seed_worker,
        generator=generator,
        persistent_workers=cfg.DATALOADER.NUM_WORKERS > 0,
    )
