"""The batch a temporal-grounding model consumes: videos, with all their sentences flattened."""
from dataclasses import dataclass, fields

import torch


@dataclass
class TLGBatch:
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

    def to(self, device, non_blocking=False):
        return TLGBatch(**{f.name: getattr(self, f.name).to(device, non_blocking=non_blocking) for f in fields(self)})

    def pin_memory(self):
        return TLGBatch(**{f.name: getattr(self, f.name).pin_memory() for f in fields(self)})

    def split_by_video(self, tensor):
        """Split a per-sentence tensor (S, ...) into a list of per-video tensors."""
        return list(torch.split(tensor, self.num_sentences.tolist()))
