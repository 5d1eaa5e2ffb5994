"""Temporal moments: IoU and the N x N candidate grid of the 2D moment map."""
import torch


def segment_iou(a, b):
    """Temporal IoU of segments ``a`` (..., 2) and ``b`` (..., 2), broadcast; the official formula."""
    inter = torch.minimum(a[..., 1], b[..., 1]) - torch.maximum(a[..., 0], b[..., 0])
    union = torch.maximum(a[..., 1], b[..., 1]) - torch.minimum(a[..., 0], b[..., 0])
    return inter.clamp(min=0) / union


def moment_grid(durations, num_clips):
    """Seconds of every cell (i, j) of the moment map: [i * d / N, (j + 1) * d / N].

    ``durations``: (B,) tensor; returns (B, N * N, 2) in row-major cell order. The arithmetic
    follows the official ``score2d_to_moments_scores`` ((j + 1) * d / N) so that IoU ties break identically.
    """
    durations = torch.as_tensor(durations, dtype=torch.float64)
    n = num_clips
    grid = torch.stack(torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij"), dim=-1).reshape(-1, 2)
    grid[:, 1] += 1
    return grid[None].float() * durations.float()[:, None, None] / n


def iou2d_from_moments(moments, durations, num_clips):
    """IoU target maps (S, N, N) for moments (S, 2) whose videos last ``durations`` (S,) seconds."""
    cells = moment_grid(durations, num_clips)  # S x NN x 2
    return segment_iou(cells, moments.float()[:, None, :]).reshape(-1, num_clips, num_clips)
