"""Opt-in pre-resampled feature cache (DATALOADER.FEATURE_CACHE_DIR): same items, built once, rebuilt when stale."""
import os

import h5py
import numpy as np
import torch

from mmn.modeling import build_dataset
from mmn.config import load_config

from helpers.paths import PARITY_DIR as PARITY


def _cfg(text_encoder, root, cache=""):
    return load_config(os.path.join(PARITY, "config.yaml"), [
        "MODEL.MMN.TEXT_ENCODER.PRETRAINED", text_encoder, "DATASETS.ROOT", str(root),
        "DATALOADER.FEATURE_CACHE_DIR", str(cache)])


def test_cache_gives_the_same_items_and_is_reused(parity_text_encoder_dir, tmp_path):
    root = os.path.join(PARITY, "dataset")
    plain = build_dataset(_cfg(parity_text_encoder_dir, root), "charades_train")
    cached = build_dataset(_cfg(parity_text_encoder_dir, root, tmp_path / "cache"), "charades_train")
    files = os.listdir(tmp_path / "cache")
    assert sorted(files) == ["vgg_rgb_features.charades_train.resampled16.npy",
                             "vgg_rgb_features.charades_train.resampled16.npy.json"]
    for i in range(len(plain)):
        assert torch.equal(plain[i]["feats"], cached[i]["feats"])
    path = tmp_path / "cache" / "vgg_rgb_features.charades_train.resampled16.npy"
    mtime = os.path.getmtime(path)
    build_dataset(_cfg(parity_text_encoder_dir, root, tmp_path / "cache"), "charades_train")
    assert os.path.getmtime(path) == mtime  # reused, not rebuilt

    # items are views of a copy-on-write mapping (like TensorDataset's): a write stays in this process
    before = path.read_bytes()
    cached[0]["feats"].fill_(7.0)
    assert (cached[0]["feats"] == 7.0).all()
    reopened = build_dataset(_cfg(parity_text_encoder_dir, root, tmp_path / "cache"), "charades_train")
    assert torch.equal(reopened[0]["feats"], plain[0]["feats"])
    assert path.read_bytes() == before


def test_stale_cache_is_rebuilt(parity_text_encoder_dir, tmp_path):
    import shutil

    root = tmp_path / "data"
    shutil.copytree(os.path.join(PARITY, "dataset"), root)
    cache = tmp_path / "cache"
    build_dataset(_cfg(parity_text_encoder_dir, root, cache), "charades_test")
    feat_file = root / "Charades_STA" / "vgg_rgb_features.hdf5"
    with h5py.File(feat_file, "a") as f:  # the source changes: the cache must follow
        vid = "GQYR9"
        data = f[vid][()]
        del f[vid]
        f.create_dataset(vid, data=np.ones_like(data))
    os.utime(feat_file, (1, 1))
    ds = build_dataset(_cfg(parity_text_encoder_dir, root, cache), "charades_test")
    item = ds[ds.vids.index("GQYR9")]
    expected = torch.full_like(item["feats"], 1 / np.sqrt(item["feats"].shape[1]))
    assert torch.allclose(item["feats"], expected)
    assert not [f for f in os.listdir(cache) if ".tmp" in f]
