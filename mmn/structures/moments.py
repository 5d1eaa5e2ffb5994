"""Temporal moments: IoU, and the IoU of the cells of a 2D moment map with moments."""
import torch


def segment_iou(a, b):
    """Temporal IoU of segments ``a`` (..., 2) and ``b`` (..., 2), broadcast; the official formula."""
    inter = torch.minimum(a[..., 1], b[..., 1]) - torch.maximum(a[..., 0], b[..., 0])
    union = torch.maximum(a[..., 1], b[..., 1]) - torch.minimum(a[..., 0], b[..., 0])
    return inter.clamp(min=0) / union


def cell_iou_targets(moments, durations, rows, cols, num_clips):
    """IoU of map cells (rows[p], cols[p]) with each moment: (S, P) for moments (S, 2), durations (S,).

    Cell (i, j) is [i * d / N, (j + 1) * d / N] in the float32 arithmetic of the official
    ``score2d_to_moments_scores``, so the values equal the official N x N targets bit for bit at those cells.
    """
    d = torch.as_tensor(durations, dtype=torch.float64).to(moments.device).float()[:, None]
    start = rows.float()[None, :] * d / num_clips
    end = (cols.float()[None, :] + 1) * d / num_clips
    moments = moments.float()
    s, e = moments[:, :1], moments[:, 1:]
    inter = torch.minimum(end, e) - torch.maximum(start, s)
    union = torch.maximum(end, e) - torch.minimum(start, s)
    return inter.clamp_(min=0).div_(union)
