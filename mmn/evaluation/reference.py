"""Plain, loop-based implementations of the official algorithms.

Written from the official code's behaviour (docs/MMN_SPEC.md, MCG-NJU/MMN), used only to check the
vectorised code in tests/ and to time against it in benchmarks/; never on a hot path. Each follows the
official code step by step, with its costs kept (Python loops per video and per sentence), and uses
nothing of the package, so that the package is never checked against itself.

Where the official code has a fault listed in MMN_SPEC.md ("Known faults") it is not copied: a query
with fewer kept moments than a recall rank counts a missing moment as a miss instead of crashing.
"""
import torch


def segment_iou(a, b):
    """Temporal IoU of segments ``a`` (..., 2) and ``b`` (..., 2), broadcast; the official ``iou``.

    The official code casts the ground truth to float32; every caller here passes float32 moments
    (or float64 on both sides, where a loss reference needs it).
    """
    start, end = a[..., 0], a[..., 1]
    s, e = b[..., 0], b[..., 1]
    inter = torch.minimum(end, e) - torch.maximum(start, s)
    union = torch.maximum(end, e) - torch.minimum(start, s)
    return inter.clamp(min=0) / union


def score_map_candidates(score2d, duration):
    """Non-zero cells of one N x N map as moments [i * d / N, (j + 1) * d / N] seconds, with their scores.

    The official ``score2d_to_moments_scores``: long cells times ``duration`` (a Python float gives a
    float32 result), cells in row-major order.
    """
    num_clips = score2d.shape[-1]
    cells = score2d.nonzero()
    scores = score2d[cells[:, 0], cells[:, 1]]
    cells[:, 1] += 1
    moments = cells * duration / num_clips
    return moments, scores


def official_iou2d(moment, duration, num_clips):
    """The N x N IoU map of one moment (the official ``moment_to_iou2d``): every cell's IoU with it."""
    candidates, _ = score_map_candidates(torch.ones(num_clips, num_clips), duration)
    return segment_iou(candidates, moment).reshape(num_clips, num_clips)


def official_avgfeats(feats, num_segments):
    """The official ``avgfeats`` loop: mean of rows [idx[i], idx[i + 1]), or row idx[i] alone if empty.

    Boundaries idx = round(arange(0, P + 1) / P * n), clamped to n - 1 (n = rows of ``feats``).
    """
    num_rows = feats.size(0)
    idxs = torch.arange(0, num_segments + 1, 1.0) / num_segments * num_rows
    idxs = idxs.round().long().clamp(max=num_rows - 1)
    segments = []
    for i in range(num_segments):
        s, e = idxs[i], idxs[i + 1]
        segments.append(feats[s:e].mean(dim=0) if s < e else feats[s])
    return torch.stack(segments)


def greedy_nms(score2d, duration, nms_thresh, k=None):
    """Moments (and scores) kept by the official greedy NMS of one N x N score map's candidates.

    Candidates (``score_map_candidates``) sorted by score, descending, exact ties in row-major cell
    order (a stable sort: the official sort leaves that order unspecified); walking the list, a moment
    is kept unless an earlier kept one overlaps it by IoU > ``nms_thresh``. With ``k`` the walk stops
    after k kept moments (later ones cannot change the first k); without it, it walks the whole list
    as officially.
    """
    moments, scores = score_map_candidates(score2d, duration)
    scores, ranks = scores.sort(descending=True, stable=True)
    moments = moments[ranks]
    suppressed = torch.zeros(len(ranks), dtype=torch.bool)
    num_kept = 0
    for i in range(len(ranks) - 1):  # the last one is kept unless suppressed already
        if suppressed[i]:
            continue
        num_kept += 1
        if num_kept == k:
            suppressed[i + 1:] = True
            break
        suppressed[i + 1:][segment_iou(moments[i + 1:], moments[i]) > nms_thresh] = True
    kept = ~suppressed
    return moments[kept], scores[kept]


def update_recall_hits(hits, kept_moments, gt_moment, iou_thresholds, recalls):
    """The official per-query recall update: hits[r, m] += a kept moment among the first recalls[r]
    has IoU >= iou_thresholds[m] (a float32 tensor) with ``gt_moment``; a missing moment is a miss."""
    for i, r in enumerate(recalls):
        ious = segment_iou(kept_moments[:r], gt_moment)
        hits[i] += (ious[:, None] >= iou_thresholds).any(dim=0)


def recall_hits(kept_moments, gt_moments, iou_thresholds, recalls=(1, 5)):
    """Hit counts, a (len(recalls), len(iou_thresholds)) float32 tensor, of per-query kept moments."""
    thresholds = torch.tensor(iou_thresholds)
    hits = torch.zeros(len(recalls), len(thresholds))
    for moments, gt in zip(kept_moments, gt_moments):
        update_recall_hits(hits, moments, gt, thresholds, recalls)
    return hits


def mean_top1_iou(kept_moments, gt_moments):
    """Mean IoU of each query's first kept moment with its ground truth, 0 where none was kept (not
    official: the mIoU users expect)."""
    top1 = [segment_iou(moments[:1], gt)[0].item() if len(moments) else 0.0
            for moments, gt in zip(kept_moments, gt_moments)]
    return sum(top1) / len(top1)


def official_evaluate(predictions, durations, gt_moments, iou_thresholds, nms_thresh, contrastive_pow,
                      recalls=(1, 5), keep_top=None):
    """The official ``evaluate()``: per video score fusion, per sentence candidates + NMS + recall update.

    predictions: list (per video) of {"contrastive": S x N x N, "iou": S x N x N}; durations: list of
    seconds (Python floats); gt_moments: list of S x 2 float32 tensors. Returns the recall dict
    (fractions, keys "R@n,IoU@m") and, if ``keep_top`` is given, the list of the first ``keep_top``
    kept moments of every query (for comparison only; one slice per query), else None.
    """
    thresholds = torch.tensor(iou_thresholds)
    hits = torch.zeros(len(recalls), len(thresholds))
    num_instance = 0
    kept = [] if keep_top else None
    for result2d, duration, video_gts in zip(predictions, durations, gt_moments):
        score2d = torch.pow(result2d["contrastive"] * 0.5 + 0.5, contrastive_pow) * result2d["iou"]
        for gt_moment, pred_score2d in zip(video_gts, score2d):
            num_instance += 1
            moments, _ = greedy_nms(pred_score2d, duration, nms_thresh)
            if kept is not None:
                kept.append(moments[:keep_top])
            update_recall_hits(hits, moments, gt_moment, thresholds, recalls)
    hits /= num_instance
    return {f"R@{r},IoU@{m:.1f}": hits[i, j].item()
            for i, r in enumerate(recalls) for j, m in enumerate(thresholds.tolist())}, kept
