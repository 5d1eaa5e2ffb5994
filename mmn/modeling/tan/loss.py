"""2D-TAN's loss (official ``bce_rescale_loss``, ``lib/models/loss.py``)."""
import torch
import torch.nn.functional as F


def rescaled_iou_targets(map_gt, min_iou, max_iou, bias=0.0):
    """(iou - MIN) x (1 - BIAS) / (MAX - MIN), + BIAS where > 0, clamped to [0, 1]."""
    target = (map_gt - min_iou) * (1 - bias) / (max_iou - min_iou)
    target = torch.where(target > 0, target + bias, target)
    return target.clamp(0, 1)


def bce_rescale_loss(prediction, map_mask, map_gt, min_iou, max_iou, bias=0.0):
    """(loss, joint_prob): BCE on sigmoid PROBABILITIES (not with logits: PyTorch clamps the logs at
    -100, so saturated logits differ from the logits form), summed over the valid cells of the whole
    batch and divided by their number. joint_prob = sigmoid(prediction) x mask (masked cells exactly 0)."""
    joint_prob = torch.sigmoid(prediction) * map_mask
    target = rescaled_iou_targets(map_gt, min_iou, max_iou, bias)
    loss = F.binary_cross_entropy(joint_prob, target, reduction="none") * map_mask
    return loss.sum() / map_mask.sum(), joint_prob
