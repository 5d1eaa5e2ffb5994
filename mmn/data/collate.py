"""Collate video items into a TLGBatch (IoU targets are computed by the model, on its valid cells only)."""
import torch

from ..structures import TLGBatch


class BatchCollator:
    """Video items (TLGDataset) into one TLGBatch; token ids are padded with ``pad_token_id``."""

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
        return TLGBatch(
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
