"""CNM's data: one item per query, frames resampled (not L2-normalised), kept words with GloVe vectors.

Reuses the annotation adapters (``load_annotations``) and ``HDF5FeatureReader``. The moments are
carried in the batch for evaluation only; the model never reads them (CNM is weakly supervised).
"""
import functools
import logging
import os
from dataclasses import dataclass

import numpy as np
import torch

from ...data.annotations import AnnotationError, load_annotations
from ...data.catalog import get_entry
from ...data.dataset import PerQueryDataset
from ...data.features import resample_clips
from ...data.glove import load_glove_text
from ...structures.batch import TensorBatch
from ...utils.errors import ConfigError
from .text import CNMVocabulary, tokenize

logger = logging.getLogger(__name__)


@dataclass
class CNMBatch(TensorBatch):
    frames_feat: torch.Tensor  # B x P x D float32 (P = MODEL.CNM.NUM_FRAMES)
    frames_len: torch.Tensor   # B long
    words_id: torch.Tensor     # B x L kept-word ids (0 = padding), L = longest query of the batch
    words_feat: torch.Tensor   # B x (L + 1) x 300: position 0 = start placeholder (replaced by start_vec)
    words_len: torch.Tensor    # B long
    weights: torch.Tensor      # B x L masking probabilities (softmax of the 1/2 weights over the query)
    durations: torch.Tensor    # B float64 seconds (evaluation)
    moments: torch.Tensor      # B x 2 float32 seconds (evaluation ONLY: never read by the model)
    indices: torch.Tensor      # B query indices in the dataset


    @property
    def query_indices(self):
        return self.indices

    def __len__(self):
        return self.frames_feat.shape[0]


class CNMDataset(PerQueryDataset):
    """Queries of an annotation file; item = one (video, sentence) pair.

    ``is_training``: queries with no kept word are left out (the release cannot mask a word in
    them and would fail); at test time they stay, with the start token alone.
    """

    def __init__(self, ann_file, feat_file, fmt, vocab, num_frames=200, max_num_words=20, feat_key=None,
                 feat_dim=None, is_training=False, check_features=True, feat_dim_key=None):
        self.ann_file, self.feat_file, self.format = ann_file, feat_file, fmt
        self.vocab = vocab
        self.num_frames = num_frames
        self.max_num_words = max_num_words
        videos, self.stats = load_annotations(ann_file, fmt)
        vids, durations, moments, sentences, word_ids, word_weights = [], [], [], [], [], []
        self.num_without_words = 0
        for v in videos:
            for moment, sentence in zip(v.moments, v.sentences):
                ids, weights = vocab.encode(sentence, max_num_words)
                if not ids:
                    self.num_without_words += 1
                    if is_training:
                        continue
                vids.append(v.vid)
                durations.append(v.duration)
                moments.append(moment)
                sentences.append(sentence)
                word_ids.append(np.asarray(ids, dtype=np.int64))
                word_weights.append(np.asarray(weights, dtype=np.float32))
        if self.num_without_words:
            logger.warning("%s: %d queries have no word of the vocabulary%s", ann_file, self.num_without_words,
                           " (left out of training)" if is_training else "")
        if not vids:
            raise AnnotationError(f"{ann_file}: no query left (none has a word of the vocabulary)")
        self.vids, self.sentences = vids, sentences
        self.durations = np.asarray(durations, dtype=np.float64)
        self.moments = torch.tensor(moments, dtype=torch.float32)
        self.word_ids, self.word_weights = word_ids, word_weights
        self.open_features(feat_file, feat_key, feat_dim, feat_dim_key, check=check_features)

    def collator(self):
        return CNMCollator()

    def __getitem__(self, idx):
        frames = resample_clips(self.features.read(self.vids[idx]), self.num_frames)
        return query_item(self.vocab, frames, self.word_ids[idx], self.word_weights[idx], float(self.durations[idx]),
                          self.moments[idx], idx)


def query_item(vocab, frames, ids, weights, duration, moment, idx):
    """One CNM item: resampled frames, the kept words' ids, GloVe vectors and masking weights."""
    vectors = vocab.vectors[ids] if len(ids) else np.zeros((0, vocab.dim), np.float32)
    # position 0: the release puts a copy of the first word's vector there (overwritten by start_vec)
    placeholder = vectors[:1] if len(ids) else np.zeros((1, vocab.dim), np.float32)
    return {
        "frames_feat": frames,
        "words_id": torch.from_numpy(ids),
        "words_feat": torch.from_numpy(np.concatenate([placeholder, vectors], axis=0)),
        "weights": torch.from_numpy(weights),
        "duration": duration,
        "moment": moment,
        "idx": idx,
    }


def build_query_batch(cfg, features, duration, sentences):
    """A CNMBatch of one video's raw frame features and free ``sentences`` (prediction)."""
    c = cfg.MODEL.CNM
    vocab = cached_cnm_vocabulary(cfg)
    frames = resample_clips(features, c.NUM_FRAMES)
    items = []
    for q, sentence in enumerate(sentences):
        ids, weights = vocab.encode(sentence, c.MAX_NUM_WORDS)
        items.append(query_item(vocab, frames, np.asarray(ids, dtype=np.int64), np.asarray(weights, dtype=np.float32),
                                duration, torch.zeros(2), q))
    return CNMCollator()(items)


class CNMCollator:
    """Pads a list of items into a CNMBatch; masking weights become softmax probabilities per query."""

    def __call__(self, items):
        bsz = len(items)
        words_len = torch.tensor([len(it["words_id"]) for it in items], dtype=torch.long)
        width = max(int(words_len.max()), 1)
        dim = items[0]["words_feat"].shape[1]
        words_id = torch.zeros(bsz, width, dtype=torch.long)
        words_feat = torch.zeros(bsz, width + 1, dim, dtype=torch.float32)
        weights = torch.zeros(bsz, width, dtype=torch.float32)
        for i, it in enumerate(items):
            n = len(it["words_id"])
            words_id[i, :n] = it["words_id"]
            words_feat[i, :n + 1] = it["words_feat"]
            if n:
                w = np.exp(it["weights"].numpy().astype(np.float64))  # float64 as the release's numpy
                weights[i, :n] = torch.from_numpy((w / np.sum(w)).astype(np.float32))
        frames = torch.stack([it["frames_feat"] for it in items]).float()
        return CNMBatch(
            frames_feat=frames,
            frames_len=torch.full((bsz,), frames.shape[1], dtype=torch.long),
            words_id=words_id, words_feat=words_feat, words_len=words_len, weights=weights,
            durations=torch.tensor([it["duration"] for it in items], dtype=torch.float64),
            moments=torch.stack([it["moment"] for it in items]),
            indices=torch.tensor([it["idx"] for it in items], dtype=torch.long),
        )


# ---------------------------------------------------------------------------- builders from a config
def build_cnm_vocabulary(cfg):
    """MODEL.CNM.GLOVE: an .npz (words, vectors, counts: the release's vocabulary) or a GloVe text file
    (then the vocabulary is counted on the DATASETS.TRAIN splits)."""
    return _vocabulary(*_vocabulary_source(cfg))


def _vocabulary_source(cfg):
    """What the vocabulary is read from: (GloVe path, VOCAB_SIZE, WORD_DIM, catalog entries of the train splits)."""
    c = cfg.MODEL.CNM
    if not c.GLOVE:
        raise ConfigError("MODEL.CNM.GLOVE is empty: give the .npz vocabulary or a GloVe text file")
    path = os.path.join(cfg.DATASETS.ROOT, c.GLOVE)  # an absolute GLOVE stays as it is
    if not os.path.isfile(path):
        raise ConfigError(f"{path}: MODEL.CNM.GLOVE not found (relative paths are under DATASETS.ROOT)")
    train_entries = () if path.endswith(".npz") else tuple(get_entry(cfg, split) for split in cfg.DATASETS.TRAIN)
    return path, c.VOCAB_SIZE, c.WORD_DIM, train_entries


def _vocabulary(path, vocab_size, word_dim, train_entries):
    if path.endswith(".npz"):
        vocab = CNMVocabulary.from_npz(path, vocab_size)
    else:
        sentences = []
        for entry in train_entries:
            videos, _ = load_annotations(entry.ann_file, entry.format)
            sentences.extend(s for v in videos for s in v.sentences)
        wanted = {t for s in sentences for t in tokenize(s)}
        vocab = CNMVocabulary.from_sentences(sentences, load_glove_text(path, wanted, word_dim), vocab_size)
    if vocab.dim != word_dim:
        raise ConfigError(f"{path}: vectors of size {vocab.dim}, MODEL.CNM.WORD_DIM is {word_dim}")
    return vocab


# the train, val and test datasets of a run share one vocabulary, read once (the last few kept)
_cached_vocabulary = functools.lru_cache(maxsize=4)(_vocabulary)


def cached_cnm_vocabulary(cfg):
    """``build_cnm_vocabulary``, read once per (GloVe file, size, dimension, train splits) in this process."""
    return _cached_vocabulary(*_vocabulary_source(cfg))


def build_cnm_dataset(cfg, entry, vocab, is_training=False):
    """CNMDataset of catalog ``entry``; MODEL.CNM.FEATURE_FILE / FEATURE_KEY replace the entry's features
    (CNM's Charades results use I3D features, not the catalog's VGG)."""
    c = cfg.MODEL.CNM
    feat_file = os.path.join(cfg.DATASETS.ROOT, c.FEATURE_FILE) if c.FEATURE_FILE else entry.feat_file
    feat_key = entry.feat_key if c.FEATURE_KEY == "default" else (c.FEATURE_KEY or None)
    return CNMDataset(entry.ann_file, feat_file, entry.format, vocab, num_frames=c.NUM_FRAMES,
                      max_num_words=c.MAX_NUM_WORDS, feat_key=feat_key, feat_dim=c.FRAME_DIM,
                      feat_dim_key="MODEL.CNM.FRAME_DIM", is_training=is_training)

