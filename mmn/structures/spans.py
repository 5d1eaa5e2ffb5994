"""Normalised spans of the DETR-style models: (center, width) <-> (start, end), and the temporal IoU /
generalized IoU of their losses and Hungarian matching.

All functions work elementwise on the last dimension (size 2) and broadcast like any torch operation:
``generalized_temporal_iou(a[..., :, None, :], b[..., None, :, :])`` is the pairwise (..., N, M) matrix,
``generalized_temporal_iou(a, b)`` of two aligned (K, 2) sets the K matched pairs. The arithmetic is the
official one of Moment-DETR (``moment_detr/span_utils.py``, after DETR's ``box_ops``), so values equal
the official ones bit for bit: the union is ``len_a + len_b - inter``. ``segment_iou``
(``mmn/structures/moments.py``) divides by the hull instead, which gives the same IoU in exact arithmetic
but may differ in the last bit; the evaluators and the moment-map models use that one.
"""
import torch


def span_cxw_to_xx(spans):
    """(center, width) -> (start, end), last dimension."""
    start = spans[..., 0] - 0.5 * spans[..., 1]
    end = spans[..., 0] + 0.5 * spans[..., 1]
    return torch.stack([start, end], dim=-1)


def span_xx_to_cxw(spans):
    """(start, end) -> (center, width), last dimension."""
    center = spans.sum(-1) * 0.5
    width = spans[..., 1] - spans[..., 0]
    return torch.stack([center, width], dim=-1)


def temporal_iou(a, b):
    """(IoU, union) of (start, end) spans ``a`` and ``b``, broadcast; union = len_a + len_b - intersection."""
    inter = (torch.minimum(a[..., 1], b[..., 1]) - torch.maximum(a[..., 0], b[..., 0])).clamp(min=0)
    union = (a[..., 1] - a[..., 0]) + (b[..., 1] - b[..., 0]) - inter
    return inter / union, union


def generalized_temporal_iou(a, b):
    """Generalized IoU (IoU - (hull - union) / hull) of (start, end) spans ``a`` and ``b``, broadcast, in float32.

    Spans must have end >= start (the official code asserts it; not checked here, to keep the hot path free
    of device synchronisation).
    """
    a, b = a.float(), b.float()
    iou, union = temporal_iou(a, b)
    hull = (torch.maximum(a[..., 1], b[..., 1]) - torch.minimum(a[..., 0], b[..., 0])).clamp(min=0)
    return iou - (hull - union) / hull
