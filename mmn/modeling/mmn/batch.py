"""MMN's batch: videos, with all their sentences flattened; and the collator that builds it."""
from dataclasses import dataclass

import torch

from ...structures.batch import TensorBatch


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
        """Split a per-sentence tensor (S, ...) into a list of per-video tensors."""
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
