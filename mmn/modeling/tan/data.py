"""2D-TAN's data: one item per sentence (official ``lib/datasets/{charades,activitynet,tacos}.py``).

Shared with the framework: the annotation adapters (``load_annotations``: the JSON form of the
official annotations, one format for every model), the HDF5 reader, the resampling rule
(``resample_clips`` is the official ``average_to_fixed_length`` bit for bit), ``segment_iou`` and the
GloVe text reader. 2D-TAN's own: the whitespace tokens, the per-item IoU map in float64 on the float32
(k x d) / T grid with the ground truth rounded to float32 (``torch.tensor([s, e])`` in the official
loaders), and the padding collate.
"""
import functools
import logging
import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ...data.annotations import load_annotations
from ...data.catalog import get_entry
from ...data.dataset import PerQueryDataset
from ...data.features import resample_clips
from ...data.glove import load_glove_npz, load_glove_text
from ...structures import segment_iou
from ...structures.batch import TensorBatch

logger = logging.getLogger(__name__)


# ---------------------------------------------------------------------------- words
def official_tokens(sentence, fmt):
    """The official tokens: ``sentence.split()`` (whitespace only: "camera." and "works," stay tokens).

    Charades-STA: the official txt loader takes the text before the line's ".\\n", so the JSON form's
    final period (kept there as in the release files) is dropped first; ActivityNet and TACoS read the
    sentence of their JSON as it is.
    """
    if fmt == "charades" and sentence.endswith("."):
        sentence = sentence[:-1]
    return sentence.split()


class WordVectors:
    """GloVe lookup as the official loaders: lower-cased tokens, an unknown token gets the zero vector
    (the ``<unk>`` row that torchtext's glove.6B is extended with, at index 400000)."""

    def __init__(self, vectors, dim):
        self.vectors = vectors  # {word: float32 vector}
        self.dim = dim

    def __call__(self, tokens):
        """L x dim float32 (L = len(tokens))."""
        out = np.zeros((len(tokens), self.dim), dtype=np.float32)
        for k, token in enumerate(tokens):
            vector = self.vectors.get(token.lower())
            if vector is not None:
                out[k] = vector
        return torch.from_numpy(out)

    def num_unknown(self, tokens):
        return sum(t.lower() not in self.vectors for t in tokens)


# GloVe vectors read so far, per file: {path: (word -> vector, words looked up)}; a text file is only ever read
# for words not looked up before (the train, val and test datasets of a run and the predictor share it)
_GLOVE_CACHE = {}


def load_word_vectors(path, words, dim):
    """``WordVectors`` of ``words`` (lower-cased) from a GloVe text file (the shared reader, as CNM's) or
    an .npz of (words, vectors); the text file is read again only for words not looked up before."""
    words = {w.lower() for w in words}
    if path.endswith(".npz"):
        if path not in _GLOVE_CACHE:
            names, vectors, _ = load_glove_npz(path)
            _GLOVE_CACHE[path] = (dict(zip(names, vectors)), None)
        table, _ = _GLOVE_CACHE[path]
    else:
        table, seen = _GLOVE_CACHE.get(path, ({}, set()))
        missing = words - seen
        if missing:
            table.update(load_glove_text(path, words=missing, dim=dim))
            seen = seen | missing
        _GLOVE_CACHE[path] = (table, seen)
    width = len(next(iter(table.values()))) if table else dim
    if width != dim:
        raise ValueError(f"{path}: word vectors of size {width}, MODEL.TAN.FUSION_MODULE.TXT_INPUT_SIZE is {dim}")
    return WordVectors({w: table[w] for w in words if w in table}, dim)


# ---------------------------------------------------------------------------- targets
def target_grid(duration, num_clips):
    """T x T x 2 float32 seconds of every cell (i, j): [i x d / T, (j + 1) x d / T], computed as (k x d) / T
    (``charades.py:66-71``, the arithmetic of the shared ``cell_iou_targets`` and of MMN's targets)."""
    k = torch.arange(num_clips + 1, dtype=torch.float32) * float(duration) / num_clips
    start = k[:-1, None].expand(num_clips, num_clips)
    end = k[None, 1:].expand(num_clips, num_clips)
    return torch.stack([start, end], dim=-1)


def iou_map(moment, duration, num_clips):
    """T x T float64 IoU of every cell of ``target_grid`` with ``moment``, the ground truth rounded to
    float32 first as the official loaders do (``torch.tensor([s, e])``), the IoU in float64 as their numpy
    ``iou``; 0 where j < i. (The shared ``cell_iou_targets`` takes the IoU in float32.)"""
    gt = torch.tensor([float(moment[0]), float(moment[1])], dtype=torch.float32).double()
    return segment_iou(target_grid(duration, num_clips).double(), gt)


def prepare_features(raw, num_sample_clips, normalize):
    """Official per-item video input: optional per-clip L2 normalisation, then the fixed-length average."""
    if normalize:
        raw = F.normalize(raw, dim=1)
    return resample_clips(raw, num_sample_clips)


# ---------------------------------------------------------------------------- dataset
@dataclass
class TANBatch(TensorBatch):
    vis_input: torch.Tensor     # B x NUM_SAMPLE_CLIPS x D float32
    word_vectors: torch.Tensor  # B x L x TXT_INPUT_SIZE, zero-padded to the longest query
    txt_mask: torch.Tensor      # B x L x 1 (1 on real words)
    map_gt: torch.Tensor        # B x 1 x T x T float32 IoU targets
    durations: torch.Tensor     # B float64 seconds
    moments: torch.Tensor       # B x 2 float64 seconds
    indices: torch.Tensor       # B query indices of the dataset


    @property
    def query_indices(self):
        return self.indices

    def __len__(self):
        return self.vis_input.shape[0]


class TANCollator:
    """The official ``collate_fn``: words and masks zero-padded, targets to float32, features ``.float()``."""

    def __call__(self, items):
        bsz = len(items)
        length = max(max(len(it["word_vectors"]) for it in items), 1)
        dim = items[0]["word_vectors"].shape[1]
        words = torch.zeros(bsz, length, dim, dtype=torch.float32)
        mask = torch.zeros(bsz, length, 1, dtype=torch.float32)
        for b, it in enumerate(items):
            n = len(it["word_vectors"])
            words[b, :n] = it["word_vectors"]
            mask[b, :n] = 1
        return TANBatch(
            vis_input=torch.stack([it["visual_input"] for it in items]).float(),
            word_vectors=words, txt_mask=mask,
            map_gt=torch.stack([it["map_gt"] for it in items]).float()[:, None],
            durations=torch.tensor([it["duration"] for it in items], dtype=torch.float64),
            moments=torch.stack([it["moment"] for it in items]),
            indices=torch.tensor([it["idx"] for it in items], dtype=torch.long))


class TANDataset(PerQueryDataset):
    """The queries of an annotation file in file order; item = one (video, sentence) pair."""

    def __init__(self, ann_file, feat_file, fmt, word_vectors, num_sample_clips, num_clips, normalize=False,
                 feat_key=None, feat_dim=None, check_features=True, feat_dim_key=None):
        self.ann_file, self.feat_file, self.format = ann_file, feat_file, fmt
        self.num_sample_clips, self.num_clips, self.normalize = num_sample_clips, num_clips, normalize
        videos, self.stats = load_annotations(ann_file, fmt)
        self.vids, self.sentences, durations, moments = [], [], [], []
        for v in videos:
            for moment, sentence in zip(v.moments, v.sentences):
                self.vids.append(v.vid)
                self.sentences.append(sentence)
                durations.append(v.duration)
                moments.append(moment)
        self.durations = torch.tensor(durations, dtype=torch.float64)
        self.moments = torch.tensor(moments, dtype=torch.float64)
        self.tokens = [official_tokens(s, fmt) for s in self.sentences]
        if callable(word_vectors) and not isinstance(word_vectors, WordVectors):
            word_vectors = word_vectors({t for ts in self.tokens for t in ts})
        self.word_vectors = word_vectors
        unknown = sum(word_vectors.num_unknown(ts) for ts in self.tokens)
        if unknown:
            logger.info("%s: %d of %d tokens are not in the word vectors (zero vectors, as the official <unk>)",
                        ann_file, unknown, sum(map(len, self.tokens)))
        # the catalog entry's HDF5 key: None reads f[vid], else f[vid][feat_key] (ActivityNet's c3d_features)
        self.open_features(feat_file, feat_key, feat_dim, feat_dim_key, check=check_features)

    def collator(self):
        return TANCollator()

    def __getitem__(self, idx):
        duration, moment = float(self.durations[idx]), self.moments[idx]
        return {
            "visual_input": prepare_features(self.features.read(self.vids[idx]), self.num_sample_clips, self.normalize),
            "word_vectors": self.word_vectors(self.tokens[idx]),
            "map_gt": iou_map(moment, duration, self.num_clips),
            "duration": duration,
            "moment": moment,
            "idx": idx,
        }


def config_tokens(cfg):
    """The tokens of every sentence of the config's splits (DATASETS.TRAIN, VAL, TEST), lower-cased."""
    splits = tuple(cfg.DATASETS.TRAIN) + tuple(cfg.DATASETS.VAL) + tuple(cfg.DATASETS.TEST)
    return _split_tokens(tuple(get_entry(cfg, split) for split in dict.fromkeys(splits)))


@functools.lru_cache(maxsize=4)
def _split_tokens(entries):
    """The lower-cased tokens of the annotation files of catalog ``entries``, read once per set of splits (the
    datasets of one run share them); files not there yet are skipped."""
    tokens = set()
    for entry in entries:
        if os.path.isfile(entry.ann_file):
            videos, _ = load_annotations(entry.ann_file, entry.format)
            tokens.update(t.lower() for v in videos for s in v.sentences for t in official_tokens(s, entry.format))
    return frozenset(tokens)


def annotation_format(cfg):
    """The annotation format of the config's data (the catalog entry of its first training split, else of its
    first test split; None without splits): free sentences are tokenised as that format's sentences are."""
    splits = tuple(cfg.DATASETS.TRAIN) + tuple(cfg.DATASETS.TEST)
    return get_entry(cfg, splits[0]).format if splits else None


def glove_path(cfg):
    path = cfg.MODEL.TAN.GLOVE
    if not path:
        raise ValueError("MODEL.TAN.GLOVE is empty: give the GloVe text file (glove.6B.300d.txt) or an .npz")
    return os.path.join(cfg.DATASETS.ROOT, path)  # an absolute path stays as it is


def num_map_clips(cfg):
    """T, the side of the moment map: NUM_SAMPLE_CLIPS // TARGET_STRIDE."""
    return cfg.MODEL.TAN.NUM_SAMPLE_CLIPS // cfg.MODEL.TAN.TARGET_STRIDE
