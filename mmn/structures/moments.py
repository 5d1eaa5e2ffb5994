"""Temporal moments: IoU and the N x N candidate grid of the 2D moment map."""
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


def iou2d_from_moments(moments, durations, num_clips):
    """IoU target maps (S, N, N) for moments (S, 2) whose videos last ``durations`` (S,) seconds."""
    rows, cols = torch.meshgrid(torch.arange(num_clips), torch.arange(num_clips), indexing="ij")
    return cell_iou_targets(moments, durations, rows.reshape(-1), cols.reshape(-1), num_clips).reshape(
        -1, num_clips, num_clips)
