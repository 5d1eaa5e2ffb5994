"""Datasets and data loaders from a config."""
import random

import numpy as np
import torch

from ..utils import comm
from .catalog import get_entry
from .samplers import EpochShuffleSampler


def build_dataset(cfg, split_name, is_train=False):
    """The dataset of catalog split ``split_name`` (e.g. ``charades_test``) in the form the config's model
    reads (its ``build_dataset``: MMN one item per video, CNM one item per query)."""
    from ..modeling import get_model_class

    dataset = get_model_class(cfg).build_dataset(cfg, get_entry(cfg, split_name), is_train=is_train)
    dataset.split = split_name  # evaluation reads the split's catalog entry (IoU thresholds)
    return dataset


def _seed_worker(worker_id):
    seed = torch.initial_seed() % 2 ** 32  # set per worker by the loader's seeded generator
    np.random.seed(seed)
    random.seed(seed)


def make_data_loader(cfg, dataset, is_train, collate_fn=None):
    """Loader over ``dataset``: training shuffles per epoch (call ``loader.sampler.set_epoch``), the test
    split is never shuffled. SOLVER.BATCH_SIZE / TEST.BATCH_SIZE are global and split across ranks.
    ``collate_fn`` defaults to the dataset's ``collator()``."""
    world, rank = comm.get_world_size(), comm.get_rank()
    batch = cfg.SOLVER.BATCH_SIZE if is_train else cfg.TEST.BATCH_SIZE
    if batch % world:
        raise ValueError(f"{'SOLVER' if is_train else 'TEST'}.BATCH_SIZE {batch} is not divisible by the "
                         f"{world} processes")
    sampler = EpochShuffleSampler(len(dataset), shuffle=is_train, seed=cfg.SEED, rank=rank, world_size=world)
    generator = torch.Generator()
    generator.manual_seed(cfg.SEED + rank)
    return torch.utils.data.DataLoader(
        dataset,
        batch_size=batch // world,
        sampler=sampler,
        drop_last=False,
        num_workers=cfg.DATALOADER.NUM_WORKERS,
        collate_fn=collate_fn or dataset.collator(),
        worker_init_fn=_seed_worker,
        generator=generator,
        persistent_workers=cfg.DATALOADER.NUM_WORKERS > 0,
    )
