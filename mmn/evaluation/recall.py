"""The recall table: R@n IoU@m of ranked moments against the ground truth, and the thresholds and ranks
a split's table uses."""
import torch

from ..structures import segment_iou

RECALLS = (1, 5)


def metric_spec(cfg, entry, num_moments=None):
    """(IoU thresholds, recall ranks, strict) of the recall table for a split's catalog ``entry``.

    Thresholds: TEST.IOU_THRESHOLDS when given, else the entry's. Ranks: TEST.RECALLS, without those
    above ``num_moments`` (the moments the model returns per query; a model may return one). ``strict``:
    TEST.STRICT_IOU (a hit needs IoU > m instead of >= m).
    """
    thresholds = tuple(cfg.TEST.IOU_THRESHOLDS) or tuple(entry.iou_thresholds)
    recalls = tuple(r for r in cfg.TEST.RECALLS if num_moments is None or r <= num_moments) or (1,)
    return thresholds, recalls, bool(cfg.TEST.STRICT_IOU)


def recall_table(top, gt_moments, iou_thresholds, recalls=RECALLS, strict=False):
    """R@n IoU@m (fractions) and mIoU of the top-1 moment.

    top: Q x k x 2 kept moments (NaN-padded), gt_moments: Q x 2. A missing moment is a miss. A hit is
    IoU >= m, or IoU > m with ``strict``.
    """
    ious = segment_iou(top, gt_moments[:, None, :].to(top.dtype))  # Q x k; NaN where missing
    ious = torch.nan_to_num(ious, nan=-1.0)
    thresholds = torch.tensor(iou_thresholds, dtype=ious.dtype)
    result = {}
    for n in recalls:
        above = ious[:, :n, None] > thresholds if strict else ious[:, :n, None] >= thresholds
        hit = above.any(dim=1).float().mean(dim=0)  # per threshold
        for thr, value in zip(iou_thresholds, hit.tolist()):
            result[f"R@{n},IoU@{thr:.1f}"] = value
    result["mIoU"] = ious[:, 0].clamp(min=0).mean().item()
    return result
