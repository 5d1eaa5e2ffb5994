"""Datasets and data loaders from a config."""
import random

import numpy as np
import torch

from ..config.paths_catalog import get_dataset_paths
from ..utils import comm
from .collate import BatchCollator
from .dataset import TLGDataset
from .samplers import EpochShuffleSampler


def build_dataset(cfg, split_name, is_train=False):
    """The dataset of a catalog split (e.g. ``charades_test``) under DATASETS.ROOT, in the form the
    config's model reads (MMN: TLGDataset, one item per video; CNM: one item per query)."""
    if cfg.MODEL.ARCHITECTURE == "CNM":
        from .cnm_dataset import build_cnm_dataset, cached_cnm_vocabulary

        return build_cnm_dataset(cfg, split_name, cached_cnm_vocabulary(cfg), is_training=is_train)
    paths = get_dataset_paths(split_name, cfg.DATASETS.ROOT)
    return TLGDataset(paths["ann_file"], paths["feat_file"], paths["format"], cfg.INPUT.NUM_PRE_CLIPS,
                      cfg.MODEL.MMN.TEXT_ENCODER.PRETRAINED, feat_dim=cfg.MODEL.MMN.FEATPOOL.INPUT_SIZE,
                      feature_cache_dir=cfg.DATALOADER.FEATURE_CACHE_DIR)


def _seed_worker(worker_id):
    seed = torch.initial_seed() % 2 ** 32  # set per worker by the loader's seeded generator
    np.random.seed(seed)
    random.seed(seed)


def _default_collator(dataset):
    if hasattr(dataset, "collator"):
        return dataset.collator()
    return BatchCollator(dataset.pad_token_id)


def make_data_loader(cfg, dataset, is_train, collate_fn=None):
    """Loader over ``dataset``: training shuffles per epoch (call ``loader.sampler.set_epoch``), the test
    split is never shuffled. SOLVER.BATCH_SIZE / TEST.BATCH_SIZE are global and split across ranks.
    ``collate_fn`` defaults to the dataset's ``collator()`` or MMN's BatchCollator."""
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
        collate_fn=collate_fn or _default_collator(dataset),
        worker_init_fn=_seed_worker,
        generator=generator,
        persistent_workers=cfg.DATALOADER.NUM_WORKERS > 0,
    )
