"""Moment-DETR's data: one item per query, as the official ``StartEndDataset``, ``start_end_collate`` and
``prepare_batch_inputs`` (jayleicn/moment_detr ``moment_detr/start_end_dataset.py``, ``utils/tensor_utils.py``).

An item: the query's text features (``mmn.data.readers``: ``qid{qid}.npz``, first max_q_l tokens,
L2-normalised per token), the video's features (the feature folders normalised per folder, cut to the
shortest and to max_v_l, concatenated) with the time-position features (TEF) [i / ctx_l, i / ctx_l + 1 / ctx_l]
appended (ctx_l = the loaded clip count), and, for a labelled file, the span labels (at most max_windows
windows, normalised by ctx_l x clip_length, as (center, width)) and the saliency labels (one hard and one
easy positive / negative clip, below). The collate zero-pads to the longest of the batch with float 1/0
masks: the ``MomentDETRBatch`` holds the official ``prepare_batch_inputs`` tensors plus what the engine reads.

Randomness is the official one: Python's ``random`` module, called in the official order (per item
``random.shuffle`` of the record's own window list when it has more than max_windows, then
``random.sample`` of the easy positive and of the easy negative), so that ``random.setstate`` with a
recorded state reproduces the labels; ``np.random`` only for the optional text-token drop. The hard labels
use ``np.argsort`` with numpy's default kind as the official code: among clips of equal summed score its
pick depends on numpy's build and CPU (SIMD sort), as the official code's does.
"""
import random
from dataclasses import dataclass, fields
from typing import List, Optional

import numpy as np
import torch

from ...utils.errors import ConfigError
from ...data.annotations import AnnotationError
from ...data.qvhighlights import CLIP_LENGTH, FORMAT, LABEL_FIELDS, load_qvhighlights
from ...data.readers import build_text_reader, build_video_reader
from ...structures.batch import TensorBatch


# ---------------------------------------------------------------------------- labels and TEF
def temporal_endpoint_features(ctx_l):
    """(ctx_l, 2) float32 [start, end] of every clip as a fraction of the loaded clips (official ``:84-92``)."""
    start = torch.arange(0, ctx_l, 1.0) / ctx_l
    return torch.stack([start, start + 1.0 / ctx_l], dim=1)


def span_labels(windows, ctx_l, clip_length=CLIP_LENGTH, max_windows=5):
    """(n, 2) float32 (center, width) of the windows (seconds) normalised by ctx_l x clip_length.

    More than ``max_windows`` windows: ``random.shuffle`` of ``windows`` IN PLACE (the record's list, as the
    official code), then the first ``max_windows``.
    """
    if len(windows) > max_windows:
        random.shuffle(windows)
        windows = windows[:max_windows]
    xx = torch.tensor(windows, dtype=torch.float32) / (ctx_l * clip_length)
    return torch.stack([xx.sum(-1) * 0.5, xx[..., 1] - xx[..., 0]], dim=-1)


def saliency_labels(clip_ids, scores, ctx_l, max_n=1):
    """(positive clips, negative clips), each [hard..., easy...] (max_n each), as the official
    ``get_saliency_labels`` with ``add_easy_negative``.

    Hard: the relevant clips of highest / lowest score summed over the annotators (``np.argsort``, default
    kind), clamped to ctx_l - 1. Easy: ``random.sample`` of the relevant clips (not clamped) and of the clips
    outside them (in the official set-difference order); when fewer than max_n clips lie outside, the easy
    labels are copies of the hard ones (and no random number is drawn).
    """
    order = np.argsort(np.sum(np.array(scores), 1))  # increasing
    hard_pos = [min(clip_ids[k], ctx_l - 1) for k in order[-max_n:]]
    hard_neg = [min(clip_ids[k], ctx_l - 1) for k in order[:max_n]]
    easy_neg_pool = list(set(range(ctx_l)) - set(clip_ids))
    if len(easy_neg_pool) >= max_n:
        easy_pos = random.sample(clip_ids, k=max_n)
        easy_neg = random.sample(easy_neg_pool, k=max_n)
    else:
        easy_pos, easy_neg = hard_pos, hard_neg
    return hard_pos + easy_pos, hard_neg + easy_neg


def drop_text_rows(features, ratio):
    """The official ``random_drop_rows``: round(L x ratio) token rows set to 0 (``np.random``), in place."""
    count = round(len(features) * ratio)
    if count > 0:
        features[np.random.choice(len(features), size=count, replace=False)] = 0
    return features


# ---------------------------------------------------------------------------- batch and collate
@dataclass
class MomentDETRBatch(TensorBatch):
    """The official ``prepare_batch_inputs`` tensors of a batch, plus what the engine and evaluation read.

    ``model_inputs()`` / ``targets()`` give the official dictionaries (``targets`` None without labels).
    """

    src_txt: torch.Tensor                 # B x Lq x Dt float32 (Lq: longest query of the batch)
    src_txt_mask: torch.Tensor            # B x Lq float32 1/0
    src_vid: torch.Tensor                 # B x Lv x (Dv + 2) float32, TEF last (Lv: longest video of the batch)
    src_vid_mask: torch.Tensor            # B x Lv float32 1/0
    span_labels: Optional[List[torch.Tensor]]   # per query (n_windows, 2) normalised (center, width); None: no labels
    saliency_pos_labels: Optional[torch.Tensor]  # B x 2 int64 [hard, easy]
    saliency_neg_labels: Optional[torch.Tensor]  # B x 2 int64 [hard, easy]
    query_indices: torch.Tensor           # B int64: the dataset's query index of each row
    durations: torch.Tensor               # B float64 seconds (the records' durations)
    qids: list                            # B query ids
    vids: list                            # B video ids

    def _map(self, move):
        def apply(value):
            if isinstance(value, torch.Tensor):
                return move(value)
            if isinstance(value, list) and value and isinstance(value[0], torch.Tensor):
                return [move(v) for v in value]
            return value
        return type(self)(**{f.name: apply(getattr(self, f.name)) for f in fields(self)})

    def to(self, device, non_blocking=False):
        return self._map(lambda t: t.to(device, non_blocking=non_blocking))

    def pin_memory(self):
        return self._map(lambda t: t.pin_memory())

    def __len__(self):
        return self.src_vid.shape[0]

    def model_inputs(self):
        """The official ``model_inputs`` dict (src_txt, src_txt_mask, src_vid, src_vid_mask)."""
        return {"src_txt": self.src_txt, "src_txt_mask": self.src_txt_mask, "src_vid": self.src_vid,
                "src_vid_mask": self.src_vid_mask}

    def targets(self):
        """The official ``targets`` dict (``span_labels`` as [{"spans": (n, 2)}], saliency labels), None
        when the batch has no labels."""
        if self.span_labels is None:
            return None
        return {"span_labels": [{"spans": s} for s in self.span_labels],
                "saliency_pos_labels": self.saliency_pos_labels, "saliency_neg_labels": self.saliency_neg_labels}


def pad_rows(sequences):
    """(B x max_len x ... float32 zero-padded, B x max_len float32 mask 1/0): the official ``pad_sequences_1d``."""
    lengths = [len(s) for s in sequences]
    padded = torch.zeros((len(sequences), max(lengths)) + tuple(sequences[0].shape[1:]), dtype=torch.float32)
    for k, seq in enumerate(sequences):
        padded[k, :lengths[k]] = seq
    mask = (torch.arange(max(lengths))[None, :] < torch.tensor(lengths)[:, None]).float()
    return padded, mask


class MomentDETRCollator:
    """Items -> ``MomentDETRBatch`` (the official ``start_end_collate`` + ``prepare_batch_inputs``)."""

    def __call__(self, items):
        src_txt, src_txt_mask = pad_rows([it["src_txt"] for it in items])
        src_vid, src_vid_mask = pad_rows([it["src_vid"] for it in items])
        labelled = items[0].get("span_labels") is not None
        return MomentDETRBatch(
            src_txt=src_txt, src_txt_mask=src_txt_mask, src_vid=src_vid, src_vid_mask=src_vid_mask,
            span_labels=[it["span_labels"] for it in items] if labelled else None,
            saliency_pos_labels=torch.tensor([it["saliency_pos"] for it in items], dtype=torch.long) if labelled
            else None,
            saliency_neg_labels=torch.tensor([it["saliency_neg"] for it in items], dtype=torch.long) if labelled
            else None,
            query_indices=torch.tensor([it["index"] for it in items], dtype=torch.long),
            durations=torch.tensor([float(it["duration"]) for it in items], dtype=torch.float64),
            qids=[it["qid"] for it in items], vids=[it["vid"] for it in items])


def video_with_tef(video, use_tef=True):
    """Features (T, D) -> (T, D + 2) with the TEF columns appended (``use_tef``), as the dataset's items."""
    return torch.cat([video, temporal_endpoint_features(len(video))], dim=1) if use_tef else video


def query_batch(video, texts, duration, use_tef=True, qids=None, vid=""):
    """A batch without labels of one video and several queries (prediction): ``video`` (T, D) already read
    by a reader (normalised, cut to max_v_l), ``texts`` a list of (L, Dt) text features (normalised, cut)."""
    src_vid = video_with_tef(torch.as_tensor(video, dtype=torch.float32), use_tef)
    items = [{"src_txt": torch.as_tensor(t, dtype=torch.float32), "src_vid": src_vid, "index": k,
              "duration": duration, "qid": qids[k] if qids else k, "vid": vid} for k, t in enumerate(texts)]
    return MomentDETRCollator()(items)


# ---------------------------------------------------------------------------- dataset
class MomentDETRDataset(torch.utils.data.Dataset):
    """The queries of a QVHighlights-format file, one item each (module docstring).

    ``video_reader`` / ``text_reader``: ``mmn.data.readers`` readers (truncation and normalisation are
    theirs); ``load_labels``: None = when the file has them (not the test split); ``check_features``: every
    feature file checked now from its header (missing ones named with their record).
    """

    def __init__(self, ann_file, video_reader, text_reader, clip_length=CLIP_LENGTH, max_windows=5, use_tef=True,
                 load_labels=None, txt_drop_ratio=0.0, check_features=True):
        self.ann_file = ann_file
        self.records = load_qvhighlights(ann_file, clip_length)
        has_labels = self.records[0].has_labels
        self.load_labels = has_labels if load_labels is None else bool(load_labels)
        if self.load_labels and not has_labels:
            raise AnnotationError(f"{ann_file}: no labels ({', '.join(LABEL_FIELDS)}) in this file (a test split?), "
                                  "but the dataset is asked for them")
        self.video, self.text = video_reader, text_reader
        self.clip_length = clip_length
        self.max_windows = max_windows
        self.use_tef = use_tef
        self.txt_drop_ratio = txt_drop_ratio
        self.moments = torch.tensor([r.relevant_windows[0] if r.has_labels else [float("nan")] * 2
                                     for r in self.records], dtype=torch.float32)
        if check_features:
            owners = {}
            for r in self.records:
                owners.setdefault(r.vid, self.owner(r))
            self.video.check_videos([r.vid for r in self.records], owners)
            self.text.check_queries([r.qid for r in self.records], {r.qid: self.owner(r) for r in self.records})

    def owner(self, record):
        """How errors name a record."""
        return f"{self.ann_file} line {record.line} qid {record.qid}"

    def __len__(self):
        return len(self.records)

    def __getitem__(self, index):
        record = self.records[index]
        owner = self.owner(record)
        text = self.text.read_numpy(record.qid, owner)
        if self.txt_drop_ratio > 0:
            text = drop_text_rows(text, self.txt_drop_ratio)
        video = self.video.read(record.vid, owner)
        ctx_l = len(video)
        item = {"src_txt": torch.from_numpy(text), "src_vid": video_with_tef(video, self.use_tef), "index": index,
                "duration": record.duration, "qid": record.qid, "vid": record.vid, "ctx_l": ctx_l}
        if self.load_labels:
            item["span_labels"] = span_labels(record.relevant_windows, ctx_l, self.clip_length, self.max_windows)
            item["saliency_pos"], item["saliency_neg"] = saliency_labels(
                record.relevant_clip_ids, record.saliency_scores, ctx_l)
        return item

    def collator(self):
        return MomentDETRCollator()

    # ------------------------------------------------------------------ the contract's per-query views
    @property
    def num_queries(self):
        return len(self.records)

    def query_moments(self):
        """(Q, 2) float32 seconds: each query's first window in file order (NaN without labels)."""
        return self.moments

    def query_windows(self):
        """Per query all its windows (seconds) as in the file, None without labels."""
        return [[list(w) for w in r.relevant_windows] if r.has_labels else None for r in self.records]

    def query_durations(self):
        return torch.tensor([float(r.duration) for r in self.records], dtype=torch.float64)

    def query_video_ids(self):
        return [r.vid for r in self.records]

    def query_sentences(self):
        return [r.query for r in self.records]

    def query_ids(self):
        return [r.qid for r in self.records]


def build_moment_detr_dataset(entry, max_q_l=32, max_v_l=75, max_windows=5, clip_length=None, normalize_v=True,
                              normalize_t=True, use_tef=True, txt_drop_ratio=0.0, load_labels=None, v_feat_dim=None,
                              t_feat_dim=None, dim_keys=(None, None), check_features=True):
    """``MomentDETRDataset`` of catalog ``entry`` with the official options (``--max_q_l``, ``--max_v_l``,
    ``--max_windows``, ``--clip_length``, ``--no_norm_vfeat`` / ``--no_norm_tfeat``, ``--ctx_mode`` video_tef,
    ``--txt_drop_ratio``: pass it for the training split only, as the official code; ``--v_feat_dim`` without
    the TEF columns, ``--t_feat_dim``; ``dim_keys``: their config keys for the errors).

    ``clip_length`` None: the entry's (QVHighlights: 2 s); given and different from the entry's: an error.
    """
    if entry.format != FORMAT:
        raise ConfigError(f"{entry.source}: dataset split {entry.name!r} has format {entry.format!r}; Moment-DETR "
                          f"reads the {FORMAT} format (one query per jsonl line, with qid)")
    if clip_length is not None and entry.clip_length is not None and float(clip_length) != entry.clip_length:
        raise ConfigError(f"{entry.source}: dataset split {entry.name!r} has clips of {entry.clip_length:g} s, the "
                          f"config asks for {clip_length:g} s")
    clip_length = clip_length or entry.clip_length or CLIP_LENGTH
    video = build_video_reader(entry, max_len=max_v_l, normalize=normalize_v, feat_dim=v_feat_dim,
                               dim_key=dim_keys[0])
    text = build_text_reader(entry, max_len=max_q_l, normalize=normalize_t, feat_dim=t_feat_dim, dim_key=dim_keys[1])
    return MomentDETRDataset(entry.ann_file, video, text, clip_length=clip_length, max_windows=max_windows,
                             use_tef=use_tef, load_labels=load_labels, txt_drop_ratio=txt_drop_ratio,
                             check_features=check_features)
