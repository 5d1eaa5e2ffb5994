"""Dense IoU target maps for the tests: every cell of an N x N map, from the framework's ``cell_iou_targets``."""
import torch

from mmn.structures import cell_iou_targets


def iou2d_from_moments(moments, durations, num_clips):
    """IoU target maps (S, N, N) for moments (S, 2) whose videos last ``durations`` (S,) seconds."""
    rows, cols = torch.meshgrid(torch.arange(num_clips), torch.arange(num_clips), indexing="ij")
    return cell_iou_targets(moments, durations, rows.reshape(-1), cols.reshape(-1), num_clips).reshape(
        -1, num_clips, num_clips)
