"""MMN's data: one item per video with all its sentences, tokenised by the text encoder's tokenizer; the
batch of videos with their sentences flattened, and the collator that builds it.

Every benchmark is this one dataset class; the datasets differ only by their catalog entry (annotation
adapter, feature file and key)."""
import logging
from dataclasses import dataclass

import numpy as np
import torch

from ...data.annotations import AnnotationError, load_annotations
from ...data.dataset import GroundingDataset
from ...data.features import HDF5FeatureReader, prepare_video_features
from ...structures import StringTable
from ...structures.batch import TensorBatch
from ...utils import comm
from .feature_cache import ResampledFeatureCache, build_resampled_cache, resampled_cache_path
from .tokenization import load_tokenizer, tokenize

logger = logging.getLogger(__name__)

TOKENIZE_CHUNK = 2048  # sentences per tokenizer call: bounds the tokenizer's transient memory


def _tokenize_in_chunks(sentences, tokenizer, chunk=TOKENIZE_CHUNK):
    """``tokenize`` (each sentence on its own, no padding) a chunk at a time: the same arrays, but the
    tokenizer's per-call lists stay small (one call on ActivityNet's 37k sentences peaked at ~150 MB)."""
    if len(sentences) <= chunk:
        return tokenize(sentences, tokenizer)
    parts = [tokenize(sentences[i:i + chunk], tokenizer) for i in range(0, len(sentences), chunk)]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


class MMNDataset(GroundingDataset):
    """Videos with all their sentences; one item is one video.

    Everything per sentence is kept in flat arrays (token ids, lengths, moments) indexed by
    per-video offsets; IoU target maps are computed per batch by the collator, never stored.
    """

    def __init__(self, ann_file, feat_file, fmt, num_pre_clips, tokenizer, feat_dim=None,
                 check_features=True, feature_cache_dir="", feat_key=None, feat_dim_key=None):
        self.ann_file = ann_file
        self.feat_file = feat_file
        self.format = fmt
        self.num_pre_clips = num_pre_clips
        videos, self.stats = load_annotations(ann_file, fmt)
        if isinstance(tokenizer, str):
            tokenizer = load_tokenizer(tokenizer)

        self.vids = StringTable(v.vid for v in videos)
        self.durations = np.array([v.duration for v in videos], dtype=np.float64)
        counts = np.array([len(v.sentences) for v in videos], dtype=np.int64)
        self.sentence_offsets = np.concatenate([[0], np.cumsum(counts)])
        sentences = [s for v in videos for s in v.sentences]
        # float32 as the official torch.Tensor([start, end])
        self.moments = torch.tensor([m for v in videos for m in v.moments], dtype=torch.float32)
        self.tokens, self.token_lengths = _tokenize_in_chunks(sentences, tokenizer)
        self.sentences = StringTable(sentences)
        del videos, sentences  # the parsed annotation objects: only the compact copies stay
        self._check_token_lengths(getattr(tokenizer, "model_max_length", None))
        self.token_offsets = np.concatenate([[0], np.cumsum(self.token_lengths)])
        self.pad_token_id = tokenizer.pad_token_id or 0

        self.features = HDF5FeatureReader(feat_file, key=feat_key, feat_dim=feat_dim, dim_key=feat_dim_key)
        if check_features:
            self.features.check_videos(self.vids)
            self.features.close()  # re-opened lazily in each worker
        self.resampled = None  # opt-in DATALOADER.FEATURE_CACHE_DIR: features already normalised + resampled
        if feature_cache_dir:
            path = resampled_cache_path(feature_cache_dir, feat_file, num_pre_clips, ann_file)
            if comm.is_main_process():
                build_resampled_cache(self.features, self.vids, num_pre_clips, path)
            comm.synchronize()
            self.resampled = ResampledFeatureCache(path)

    def _check_token_lengths(self, max_length):
        """A sentence longer than the text encoder's positions would only fail deep inside BERT: name it here."""
        if not max_length or max_length >= 10 ** 6:  # transformers' "no limit known" sentinel is huge
            return
        too_long = np.flatnonzero(self.token_lengths > max_length)
        if len(too_long):
            k = int(too_long[0])
            video = int(np.searchsorted(self.sentence_offsets, k, side="right") - 1)
            raise AnnotationError(
                f"{self.ann_file}: video {self.vids[video]!r}: sentence {self.sentences[k][:80]!r} has "
                f"{int(self.token_lengths[k])} tokens, more than the text encoder accepts ({max_length}); "
                f"{len(too_long)} sentence(s) are too long")

    def __len__(self):
        return len(self.vids)

    @property
    def num_queries(self):
        return len(self.sentences)

    def collator(self):
        return MMNCollator(self.pad_token_id)

    def query_moments(self):
        """(num_queries, 2) float32 ground-truth moments (seconds), in dataset order."""
        return self.moments

    def query_sentences(self):
        return self.sentences

    def sentence_range(self, idx):
        return int(self.sentence_offsets[idx]), int(self.sentence_offsets[idx + 1])

    def get_duration(self, idx):
        return float(self.durations[idx])

    def query_video_ids(self):
        """Video id of every sentence, in dataset order."""
        return [self.vids[i] for i in self.query_video_index().tolist()]

    def query_durations(self):
        """(num_queries,) float64 duration of every sentence's video."""
        return torch.from_numpy(self.durations)[self.query_video_index()]

    def query_video_index(self):
        """(num_queries,) index of the video of every sentence, in dataset order."""
        return torch.repeat_interleave(torch.arange(len(self)), torch.from_numpy(np.diff(self.sentence_offsets)))

    def tokens_of(self, idx):
        """Token ids of the video's sentences padded together, and their lengths (the official ``query``, ``wordlen``)."""
        start, end = self.sentence_range(idx)
        lengths = self.token_lengths[start:end]
        # one gather for all sentences (TACoS videos have ~130): row r takes tokens[offset_r + t] for t < length_r
        position = np.arange(int(lengths.max()))
        take = position[None, :] < lengths[:, None]
        index = np.where(take, self.token_offsets[start:end, None] + position[None, :], 0)
        query = np.where(take, self.tokens[index], self.pad_token_id).astype(np.int64)
        return torch.from_numpy(query), torch.from_numpy(lengths)

    def __getitem__(self, idx):
        vid = self.vids[idx]
        if self.resampled is not None:
            feats = self.resampled.read(vid)
        else:
            feats = prepare_video_features(self.features.read(vid), self.num_pre_clips)
        query, wordlen = self.tokens_of(idx)
        start, end = self.sentence_range(idx)
        return {
            "feats": feats,
            "query": query,
            "wordlen": wordlen,
            "moment": self.moments[start:end],
            "duration": self.get_duration(idx),
            "idx": idx,
            "query_start": start,
        }


@dataclass
class MMNBatch(TensorBatch):
    feats: torch.Tensor          # B x NUM_PRE_CLIPS x D
    queries: torch.Tensor        # S x L token ids, padded with 0 over the whole batch
    wordlens: torch.Tensor       # S, tokens incl. [CLS] and [SEP]
    moments: torch.Tensor        # S x 2, seconds
    num_sentences: torch.Tensor  # B, sentences per video (sum = S)
    durations: torch.Tensor      # B, seconds (float64)
    indices: torch.Tensor        # B, dataset indices of the videos
    query_indices: torch.Tensor  # S, dataset indices of the sentences (queries)

    @property
    def sentence_durations(self):
        """S: the duration of each sentence's video."""
        return torch.repeat_interleave(self.durations, self.num_sentences)

    @property
    def video_index(self):
        """S: the batch position of each sentence's video."""
        return torch.repeat_interleave(torch.arange(len(self.num_sentences), device=self.num_sentences.device),
                                       self.num_sentences)

    def split_by_video(self, tensor):
        """Split a per-sentence tensor (S, ...) into a list of per-video tensors (benchmarks/run.py)."""
        return list(torch.split(tensor, self.num_sentences.tolist()))


class MMNCollator:
    """Video items (MMNDataset) into one MMNBatch; token ids are padded with ``pad_token_id``."""

    def __init__(self, pad_token_id=0):
        self.pad_token_id = pad_token_id

    def __call__(self, items):
        num_sentences = torch.tensor([len(it["wordlen"]) for it in items], dtype=torch.long)
        max_len = max(it["query"].shape[1] for it in items)
        queries = torch.cat([
            torch.nn.functional.pad(it["query"], (0, max_len - it["query"].shape[1]), value=self.pad_token_id)
            for it in items])
        durations = torch.tensor([it["duration"] for it in items], dtype=torch.float64)
        moments = torch.cat([it["moment"] for it in items])
        return MMNBatch(
            feats=torch.stack([it["feats"] for it in items]).float(),
            queries=queries,
            wordlens=torch.cat([it["wordlen"] for it in items]),
            moments=moments,
            num_sentences=num_sentences,
            durations=durations,
            indices=torch.tensor([it["idx"] for it in items], dtype=torch.long),
            query_indices=torch.cat([torch.arange(it["query_start"], it["query_start"] + len(it["wordlen"]))
                                     for it in items]),
        )
