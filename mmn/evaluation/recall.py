"""Score fusion, NMS and R@n IoU@m, batched over all queries in torch.

Greedy NMS only ever needs the first ``k`` kept moments for R@k; the k-th kept moment is the best
candidate not suppressed by the k-1 kept before it. So instead of the official per-query Python
loop over every candidate, we run k vectorised rounds over all queries at once; the kept moments
and their order are exactly those of the official algorithm.
"""
import torch

from ..structures import moment_grid, segment_iou

IOU_THRESHOLDS = {
    "charades": (0.5, 0.7),
    "activitynet": (0.3, 0.5, 0.7),
    "tacos": (0.1, 0.3, 0.5),
}
RECALLS = (1, 5)


def fuse_scores(contrastive, iou, contrastive_pow):
    """Official fusion: ((contrastive * 0.5 + 0.5) ** pow) * iou."""
    return torch.pow(contrastive * 0.5 + 0.5, contrastive_pow) * iou


def top_moments(score2d, durations, nms_thresh, k=5, chunk=None):
    """First ``k`` moments kept by greedy NMS of each query's score map.

    score2d: Q x N x N fused scores (candidates are the non-zero cells, as officially);
    durations: Q seconds. Returns (moments Q x k x 2 seconds, scores Q x k); rows with fewer than
    k surviving moments are padded with NaN moments and -inf scores.
    """
    q, n, _ = score2d.shape
    if chunk is None:
        chunk = max(1, int(2 ** 24 // max(n * n, 1)))  # bound the Q x N*N working set
    if q > chunk:
        parts = [top_moments(score2d[s:s + chunk], durations[s:s + chunk], nms_thresh, k, chunk)
                 for s in range(0, q, chunk)]
        return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
    scores = score2d.reshape(q, n * n)
    candidates = moment_grid(torch.as_tensor(durations, dtype=torch.float64), n)  # Q x NN x 2 (official arithmetic)
    # the official sorts the non-zero cells by score (descending); a stable sort of the full row with
    # zero cells pushed to the end gives the same order among candidates
    valid = scores != 0
    order = torch.sort(scores.masked_fill(~valid, float("-inf")), dim=1, descending=True, stable=True).indices
    sorted_scores = scores.gather(1, order)
    sorted_moments = candidates.gather(1, order[..., None].expand(-1, -1, 2))
    alive = valid.gather(1, order)  # not yet suppressed, and a real candidate

    rows = torch.arange(q)
    kept_moments = torch.full((q, k, 2), float("nan"), dtype=sorted_moments.dtype)
    kept_scores = torch.full((q, k), float("-inf"), dtype=sorted_scores.dtype)
    for r in range(k):
        has_any = alive.any(dim=1)
        first = alive.to(torch.int8).argmax(dim=1)  # first alive in score order
        best = sorted_moments[rows, first]          # Q x 2
        kept_moments[has_any, r] = best[has_any]
        kept_scores[has_any, r] = sorted_scores[rows, first][has_any]
        # greedy NMS suppresses later candidates with IoU > thresh; the kept one itself leaves too
        suppress = segment_iou(sorted_moments, best[:, None, :]) > nms_thresh
        suppress[rows, first] = True
        alive &= ~(suppress & has_any[:, None])
    return kept_moments, kept_scores


def recall_table(top, gt_moments, iou_thresholds, recalls=RECALLS):
    """R@n IoU@m (fractions) and mIoU of the top-1 moment.

    top: Q x k x 2 kept moments (NaN-padded), gt_moments: Q x 2. A missing moment is a miss.
    """
    ious = segment_iou(top, gt_moments[:, None, :].to(top.dtype))  # Q x k; NaN where missing
    ious = torch.nan_to_num(ious, nan=-1.0)
    thresholds = torch.tensor(iou_thresholds, dtype=ious.dtype)
    result = {}
    for n in recalls:
        hit = (ious[:, :n, None] >= thresholds).any(dim=1).float().mean(dim=0)  # per threshold
        for thr, value in zip(iou_thresholds, hit.tolist()):
            result[f"R@{n},IoU@{thr:.1f}"] = value
    result["mIoU"] = ious[:, 0].clamp(min=0).mean().item()
    return result


def evaluate_predictions(contrastive, iou, durations, gt_moments, dataset_name, nms_thresh, contrastive_pow, k=5):
    """Full evaluation of per-query score maps: returns (metrics dict, top moments Q x k x 2, scores Q x k)."""
    if dataset_name not in IOU_THRESHOLDS:
        raise ValueError(f"no IoU thresholds for dataset {dataset_name!r}; known: {sorted(IOU_THRESHOLDS)}")
    fused = fuse_scores(contrastive, iou, contrastive_pow)
    top, scores = top_moments(fused, durations, nms_thresh, k=k)
    metrics = recall_table(top, gt_moments, IOU_THRESHOLDS[dataset_name], recalls=tuple(r for r in RECALLS if r <= k))
    return metrics, top, scores
