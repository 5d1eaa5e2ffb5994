"""Scoring CNM's one-moment-per-query predictions with the shared ``recall_table``."""
import torch

from ...evaluation.recall import recall_table

# the IoU thresholds CNM reports (R@1 only; mIoU always)
CNM_IOU_THRESHOLDS = {
    "charades": (0.3, 0.5, 0.7),
    "activitynet": (0.1, 0.3, 0.5),
    "tacos": (0.1, 0.3, 0.5),
}


def moments_in_seconds(moments, durations):
    """Q x k x 2 normalised moments -> seconds (float64)."""
    return moments.double() * torch.as_tensor(durations, dtype=torch.float64)[:, None, None]


def evaluate_cnm(moments, durations, gt_moments, dataset_name, iou_thresholds=None):
    """R@1 IoU@m and mIoU of normalised ``moments`` (Q x 1 x 2, the model's eval output) against
    ``gt_moments`` (Q x 2 seconds) of videos lasting ``durations`` (Q seconds)."""
    if iou_thresholds is None:
        if dataset_name not in CNM_IOU_THRESHOLDS:
            raise ValueError(f"no CNM IoU thresholds for {dataset_name!r}; known: {sorted(CNM_IOU_THRESHOLDS)}")
        iou_thresholds = CNM_IOU_THRESHOLDS[dataset_name]
    top = moments_in_seconds(moments, durations)
    return recall_table(top, torch.as_tensor(gt_moments, dtype=torch.float64), iou_thresholds, recalls=(1,))
