"""Samplers: one code path for single-process and distributed runs, both with ``set_epoch``."""
import torch
from torch.utils.data import Sampler


class EpochShuffleSampler(Sampler):
    """Shuffles (or not) with a generator seeded by (seed, epoch), then keeps this rank's share.

    With world_size 1 it is a plain (seeded) random or sequential sampler that also has
    ``set_epoch``, which the official single-process path lacked. Padded by repetition so
    that every rank sees the same number of items, as DistributedSampler; ``pad_to`` (a multiple of
    world_size, default world_size) pads to a multiple of that many instead, as a DistributedSampler over
    ``pad_to`` processes (the shards of SOLVER.NUM_SHARDS).
    """

    def __init__(self, size, shuffle, seed=0, rank=0, world_size=1, pad_to=None):
        self.size, self.shuffle, self.seed = size, shuffle, seed
        self.rank, self.world_size = rank, world_size
        self.epoch = 0
        pad_to = pad_to or world_size
        self.num_samples = -(-size // pad_to) * pad_to // world_size

    def set_epoch(self, epoch):
        self.epoch = epoch

    def __iter__(self):
        if self.shuffle:
            g = torch.Generator()
            g.manual_seed(self.seed + self.epoch)
            order = torch.randperm(self.size, generator=g).tolist()
        else:
            order = list(range(self.size))
        total = self.num_samples * self.world_size
        order += order[: total - len(order)]
        return iter(order[self.rank:total:self.world_size])

    def __len__(self):
        return self.num_samples
