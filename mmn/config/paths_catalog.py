"""Dataset catalog: split name -> annotation file, feature file and annotation format.

Paths are relative to DATASETS.ROOT and follow the official release's layout.
"""
import os

_LAYOUT = {
    "charades": ("Charades_STA", "charades_{split}.json", "vgg_rgb_features.hdf5", ("train", "test")),
    "activitynet": ("ActivityNet", "{split}.json", "sub_activitynet_v1-3.c3d.hdf5", ("train", "val", "test")),
    "tacos": ("TACoS", "{split}.json", "tall_c3d_features.hdf5", ("train", "val", "test")),
}

DATASETS = {
    f"{name}_{split}": {
        "format": name,
        "ann_file": os.path.join(folder, ann.format(split=split)),
        "feat_file": os.path.join(folder, feats),
    }
    for name, (folder, ann, feats, splits) in _LAYOUT.items()
    for split in splits
}


def get_dataset_paths(name, root):
    """Resolve a catalog split name (e.g. ``charades_train``) under ``root``."""
    if name not in DATASETS:
        raise KeyError(f"unknown dataset split {name!r}; known: {', '.join(sorted(DATASETS))}")
    entry = DATASETS[name]
    return {
        "format": entry["format"],
        "ann_file": os.path.join(root, entry["ann_file"]),
        "feat_file": os.path.join(root, entry["feat_file"]),
    }
