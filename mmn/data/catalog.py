"""The dataset catalog: every split described once (annotation format, files, HDF5 key, IoU thresholds).

The three benchmarks are built-in entries, with paths relative to DATASETS.ROOT in the official
release's layout. ``DATASETS.CATALOG_FILE`` adds (or overrides) entries from a YAML file::

    mydata_train: {format: charades, ann_file: ann/train.json, feat_file: feats.hdf5}
    mydata_test:  {format: charades, ann_file: ann/test.json,  feat_file: feats.hdf5, iou_thresholds: [0.3, 0.5, 0.7]}

``format`` is one of the annotation formats (``mmn.data.annotations.annotation_formats()``); ``feat_key``
(optional) names the array inside each video's HDF5 group (ActivityNet's ``c3d_features``); ``dataset``
(optional) is the dataset name used in ``best_<dataset>.pth``, by default the split name without its
``_train``/``_val``/``_test`` suffix. Relative paths of a catalog file are relative to that file.

Video features come either from one HDF5 file (``feat_file``: the official MMN files, mmn-extract's output)
or, in the layout of the official QVHighlights release, from feature folders holding one ``{vid}.npz`` each
(``video_feature_dirs``: a list, also the concatenation order; ``mmn.data.readers``); exactly one of the two.
``text_feature_dir`` (optional) holds precomputed per-query text features ``qid{qid}.npz``; ``clip_length``
(optional, seconds) is the span of one feature row (QVHighlights: 2)::

    myqvh_train: {format: qvhighlights, ann_file: ann/train.jsonl, video_feature_dirs: [feats/slowfast, feats/clip],
                  text_feature_dir: feats/clip_text, clip_length: 2}

The built-in QVHighlights splits ``qvhighlights_{train,val,test}`` expect, under DATASETS.ROOT, the
official annotation files and the official feature release (``moment_detr_features.tar.gz``)::

    QVHighlights/highlight_{train,val,test}_release.jsonl
    QVHighlights/features/slowfast_features/{vid}.npz      (key "features", 2304-d per 2-s clip)
    QVHighlights/features/clip_features/{vid}.npz          (key "features", 512-d per 2-s clip)
    QVHighlights/features/clip_text_features/qid{qid}.npz  (key "last_hidden_state", tokens x 512)
"""
import os
from dataclasses import dataclass
from typing import Optional, Tuple

from ..config.loading import register_config_check
from ..utils.errors import ConfigError

SPLIT_SUFFIXES = ("_train", "_val", "_test")
DEFAULT_IOU_THRESHOLDS = (0.3, 0.5, 0.7)


@dataclass(frozen=True)
class DatasetEntry:
    """One split of one dataset, with absolute (or root-relative) paths resolved."""

    name: str                      # the split name used in DATASETS.TRAIN / TEST / VAL
    format: str                    # annotation adapter
    ann_file: str
    feat_file: str
    feat_key: Optional[str]        # None: f[vid] is the array; else f[vid][feat_key]
    iou_thresholds: Tuple[float, ...]
    dataset: str                   # DATASETS.NAME of this split
    source: str                    # "built-in" or the catalog file that declared it
    video_feature_dirs: Tuple[str, ...] = ()  # folders of {vid}.npz, concatenated in this order ("": feat_file)
    text_feature_dir: str = ""     # folder of qid{qid}.npz per-query text features ("": none)
    clip_length: Optional[float] = None  # seconds per feature row (None: not declared)


# folder under DATASETS.ROOT, annotation file pattern, feature file, HDF5 key, splits, IoU thresholds
_BUILTIN = {
    "charades": ("Charades_STA", "charades_{split}.json", "vgg_rgb_features.hdf5", None, ("train", "test"),
                 (0.5, 0.7)),
    "activitynet": ("ActivityNet", "{split}.json", "sub_activitynet_v1-3.c3d.hdf5", "c3d_features",
                    ("train", "val", "test"), (0.3, 0.5, 0.7)),
    "tacos": ("TACoS", "{split}.json", "tall_c3d_features.hdf5", None, ("train", "val", "test"), (0.1, 0.3, 0.5)),
}

# QVHighlights: folder, annotation file pattern, video feature folders (concatenation order), text feature
# folder, splits, IoU thresholds (the official R1@0.5 / R1@0.7), clip length
_BUILTIN_QVH = ("QVHighlights", "highlight_{split}_release.jsonl",
                ("features/slowfast_features", "features/clip_features"), "features/clip_text_features",
                ("train", "val", "test"), (0.5, 0.7), 2.0)

_FIELDS = {"format", "ann_file", "feat_file", "feat_key", "iou_thresholds", "dataset", "video_feature_dirs",
           "text_feature_dir", "clip_length"}
_REQUIRED = ("format", "ann_file")


def dataset_name_of_split(split):
    """``charades_train`` -> ``charades``: the split name without its split suffix."""
    for suffix in SPLIT_SUFFIXES:
        if split.endswith(suffix) and len(split) > len(suffix):
            return split[: -len(suffix)]
    return split


def builtin_entries(root):
    """The built-in splits under ``root`` (DATASETS.ROOT)."""
    entries = {}
    for name, (folder, ann, feats, key, splits, thresholds) in _BUILTIN.items():
        for split in splits:
            entries[f"{name}_{split}"] = DatasetEntry(
                name=f"{name}_{split}", format=name, ann_file=os.path.join(root, folder, ann.format(split=split)),
                feat_file=os.path.join(root, folder, feats), feat_key=key, iou_thresholds=thresholds,
                dataset=name, source="built-in")
    folder, ann, video_dirs, text_dir, splits, thresholds, clip_length = _BUILTIN_QVH
    for split in splits:
        entries[f"qvhighlights_{split}"] = DatasetEntry(
            name=f"qvhighlights_{split}", format="qvhighlights",
            ann_file=os.path.join(root, folder, ann.format(split=split)), feat_file="", feat_key=None,
            iou_thresholds=thresholds, dataset="qvhighlights", source="built-in",
            video_feature_dirs=tuple(os.path.join(root, folder, d) for d in video_dirs),
            text_feature_dir=os.path.join(root, folder, text_dir), clip_length=clip_length)
    return entries


def _feature_fields(where, folder, fields):
    """(feat_file, video_feature_dirs, text_feature_dir, clip_length) of a catalog-file entry, paths resolved."""
    has_file, has_dirs = "feat_file" in fields, "video_feature_dirs" in fields
    if has_file == has_dirs:
        raise ConfigError(f"{where}: give exactly one of feat_file (an HDF5 file) and video_feature_dirs "
                          f"(folders of {{vid}}.npz)")
    dirs = fields.get("video_feature_dirs", [])
    if has_dirs and (not isinstance(dirs, list) or not dirs or not all(isinstance(d, str) and d for d in dirs)):
        raise ConfigError(f"{where}: video_feature_dirs must be a non-empty list of folders, got {dirs!r}")
    text_dir = fields.get("text_feature_dir") or ""
    if not isinstance(text_dir, str):
        raise ConfigError(f"{where}: text_feature_dir must be a folder, got {text_dir!r}")
    clip_length = fields.get("clip_length")
    if clip_length is not None and (isinstance(clip_length, bool) or not isinstance(clip_length, (int, float))
                                    or not 0 < clip_length < float("inf")):
        raise ConfigError(f"{where}: clip_length must be a number of seconds > 0, got {clip_length!r}")
    return (os.path.join(folder, str(fields["feat_file"])) if has_file else "",
            tuple(os.path.join(folder, d) for d in dirs),
            os.path.join(folder, text_dir) if text_dir else "",
            float(clip_length) if clip_length is not None else None)


def read_catalog_file(path):
    """Entries of a YAML catalog file; every mistake names the file and the entry's key."""
    import yaml

    from .annotations import annotation_formats

    if not os.path.isfile(path):
        raise ConfigError(f"{path}: DATASETS.CATALOG_FILE not found")
    try:
        with open(path, encoding="utf-8") as f:
            raw = yaml.safe_load(f)
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: malformed YAML: {err}") from None
    if not isinstance(raw, dict) or not raw:
        raise ConfigError(f"{path}: expected a mapping of split names to entries")
    folder = os.path.dirname(os.path.abspath(path))
    entries = {}
    for split, fields in raw.items():
        where = f"{path}: entry {split!r}"
        if not isinstance(fields, dict):
            raise ConfigError(f"{where}: expected a mapping with {', '.join(_REQUIRED)}")
        unknown = sorted(set(fields) - _FIELDS)
        if unknown:
            raise ConfigError(f"{where}: unknown field(s) {unknown}; known: {sorted(_FIELDS)}")
        missing = [k for k in _REQUIRED if k not in fields]
        if missing:
            raise ConfigError(f"{where}: missing field(s) {missing}")
        if fields["format"] not in annotation_formats():
            raise ConfigError(f"{where}: format {fields['format']!r} is not an annotation adapter; "
                              f"known: {annotation_formats()}")
        thresholds = fields.get("iou_thresholds", DEFAULT_IOU_THRESHOLDS)
        if (not isinstance(thresholds, (list, tuple)) or not thresholds
                or not all(isinstance(t, (int, float)) and 0 < t <= 1 for t in thresholds)):
            raise ConfigError(f"{where}: iou_thresholds must be a list of numbers in (0, 1], got {thresholds!r}")
        feat_file, video_dirs, text_dir, clip_length = _feature_fields(where, folder, fields)
        entries[str(split)] = DatasetEntry(
            name=str(split), format=fields["format"],
            ann_file=os.path.join(folder, str(fields["ann_file"])),
            feat_file=feat_file,
            feat_key=fields.get("feat_key") or None, iou_thresholds=tuple(float(t) for t in thresholds),
            dataset=str(fields.get("dataset") or dataset_name_of_split(str(split))), source=path,
            video_feature_dirs=video_dirs, text_feature_dir=text_dir, clip_length=clip_length)
    return entries


def catalog(cfg):
    """Every split the config can name: the built-in ones, then DATASETS.CATALOG_FILE's."""
    entries = builtin_entries(cfg.DATASETS.ROOT)
    if cfg.DATASETS.CATALOG_FILE:
        entries.update(read_catalog_file(cfg.DATASETS.CATALOG_FILE))
    return entries


def get_entry(cfg, split):
    """The catalog entry of ``split``; an unknown name is an error naming the catalog."""
    entries = catalog(cfg)
    if split not in entries:
        where = f"{cfg.DATASETS.CATALOG_FILE}: " if cfg.DATASETS.CATALOG_FILE else ""
        raise ConfigError(f"{where}unknown dataset split {split!r}; known: {', '.join(sorted(entries))}")
    return entries[split]


def check_dataset_splits(cfg):
    """Check DATASETS.TRAIN / TEST / VAL against the catalog and return the dataset name they imply.

    Every split must be in the catalog and all must belong to one dataset; a given DATASETS.NAME must
    be that one. Returns "" when no split is named.
    """
    entries = catalog(cfg)
    names = {}
    for key in ("TRAIN", "TEST", "VAL"):
        for split in getattr(cfg.DATASETS, key):
            if split not in entries:
                where = f"{cfg.DATASETS.CATALOG_FILE}: " if cfg.DATASETS.CATALOG_FILE else ""
                raise ConfigError(f"DATASETS.{key}: {where}unknown dataset split {split!r}; "
                                  f"known: {', '.join(sorted(entries))}")
            names.setdefault(entries[split].dataset, []).append(f"DATASETS.{key} {split!r}")
    if len(names) > 1:
        raise ConfigError("DATASETS.TRAIN / TEST / VAL name splits of different datasets: "
                          + "; ".join(f"{name}: {', '.join(where)}" for name, where in names.items()))
    derived = next(iter(names), "")
    given = cfg.DATASETS.NAME
    if given and derived and given != derived:
        raise ConfigError(f"DATASETS.NAME {given!r} contradicts the splits, which belong to dataset {derived!r} "
                          f"({', '.join(names[derived])}); remove DATASETS.NAME or fix it")
    return derived or given


@register_config_check
def derive_dataset_name(cfg):
    """The config check of the catalog: DATASETS.NAME set from the splits (``check_dataset_splits``)."""
    cfg.DATASETS.NAME = check_dataset_splits(cfg)


def dataset_entry(cfg, dataset):
    """The catalog entry ``dataset`` was built from (the dataset dispatch records its split); a dataset made
    by hand is taken for the config's first test split."""
    return get_entry(cfg, getattr(dataset, "split", None) or cfg.DATASETS.TEST[0])
