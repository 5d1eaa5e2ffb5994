"""Collate video items into a TLGBatch, computing the IoU target maps for this batch only."""
import torch

from ..structures import TLGBatch


def iou2d_targets(moments, durations, num_clips):
    """IoU target maps (S, N, N), the values of ``structures.iou2d_from_moments`` bit for bit.

    Cell (i, j) is [i * d / N, (j + 1) * d / N] (``moment_grid``'s float32 arithmetic); its IoU with
    [s, e] only needs min/max of the cell's start with s and of its end with e, so those are computed
    once per row and per column (S x N) and combined by broadcasting: 2 full-size temporaries
    instead of about ten of twice the size.
    """
    d = torch.as_tensor(durations, dtype=torch.float64).float()[:, None]
    position = torch.arange(num_clips).float()[None, :]
    cell_start = position * d / num_clips             # S x N, row i
    cell_end = (position + 1) * d / num_clips         # S x N, column j
    moments = moments.float()
    s, e = moments[:, :1], moments[:, 1:]
    inter = torch.minimum(cell_end, e)[:, None, :] - torch.maximum(cell_start, s)[:, :, None]
    union = torch.maximum(cell_end, e)[:, None, :] - torch.minimum(cell_start, s)[:, :, None]
    return inter.clamp_(min=0).div_(union)


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
            iou2d=iou2d_targets(moments, sentence_durations, self.num_clips),
            num_sentences=num_sentences,
            durations=durations,
            indices=torch.tensor([it["idx"] for it in items], dtype=torch.long),
            query_indices=torch.cat([torch.arange(it["query_start"], it["query_start"] + len(it["wordlen"]))
                                     for it in items]),
        )
