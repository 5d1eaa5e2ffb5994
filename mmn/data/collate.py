"""Collate video items into a TLGBatch, computing the IoU target maps for this batch only."""
import torch

from ..structures import TLGBatch, iou2d_from_moments


class BatchCollator:
    def __init__(self, num_clips, pad_token_id=0):
        self.num_clips = num_clips
        self.pad_token_id = pad_token_id

    def __call__(self, items):
        num_sentences = torch.tensor([len(it["wordlen"]) for it in items], dtype=torch.long)
        max_len = max(it["query"].shape[1] for it in items)
        queries = torch.cat([
            torch.nn.functional.pad(it["query"], (0, max_len - it["query"].shape[1]), value=self.pad_token_id)
            for it in items])
        durations = torch.tensor([it["duration"] for it in items], dtype=torch.float64)
        moments = torch.cat([it["moment"] for it in items])
        sentence_durations = torch.repeat_interleave(durations, num_sentences)
        return TLGBatch(
            feats=torch.stack([it["feats"] for it in items]).float(),
            queries=queries,
            wordlens=torch.cat([it["wordlen"] for it in items]),
            moments=moments,
            iou2d=iou2d_from_moments(moments, sentence_durations, self.num_clips),
            num_sentences=num_sentences,
            durations=durations,
            indices=torch.tensor([it["idx"] for it in items], dtype=torch.long),
        )
