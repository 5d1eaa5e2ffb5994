"""MMN's answers: the official score fusion of its two maps, then greedy NMS over the fused map."""
import torch

from ...evaluation.recall import RECALLS, recall_table
from ...evaluation.score_maps import queries_per_chunk, score_map_top_moments


def fuse_scores(contrastive, iou, contrastive_pow):
    """Official fusion: ((contrastive * 0.5 + 0.5) ** pow) * iou."""
    if torch.is_grad_enabled() and (contrastive.requires_grad or iou.requires_grad):
        return torch.pow(contrastive * 0.5 + 0.5, contrastive_pow) * iou
    fused = contrastive * 0.5  # the same operations in place: one temporary instead of four
    fused += 0.5
    fused.pow_(contrastive_pow)
    fused *= iou
    return fused


def fused_top_moments(contrastive, iou, durations, nms_thresh, contrastive_pow, k=5):
    """MMN's eval outputs to its answers: ``fuse_scores``, then ``score_map_top_moments``.

    Returns (fused Q x N x N float32 on the CPU, moments Q x k x 2 seconds, scores Q x k).
    """
    fused = fuse_scores(contrastive, iou, contrastive_pow).float().cpu()
    moments, scores = score_map_top_moments(fused, durations, nms_thresh, k=k)
    return fused, moments, scores


def evaluate_predictions(contrastive, iou, durations, gt_moments, iou_thresholds, nms_thresh, contrastive_pow, k=5):
    """Full evaluation of MMN's per-query score maps (tests and benchmarks: the whole split at once): returns
    (metrics dict, top moments Q x k x 2, scores Q x k)."""
    durations = torch.as_tensor(durations, dtype=torch.float64)
    q, n = contrastive.shape[0], contrastive.shape[-1]
    chunk = queries_per_chunk(n * n)
    parts = [score_map_top_moments(fuse_scores(contrastive[s:s + chunk], iou[s:s + chunk], contrastive_pow),
                                   durations[s:s + chunk], nms_thresh, k=k) for s in range(0, q, chunk)]
    top = torch.cat([p[0] for p in parts]) if parts else torch.empty(0, k, 2)
    scores = torch.cat([p[1] for p in parts]) if parts else torch.empty(0, k)
    metrics = recall_table(top, gt_moments, tuple(iou_thresholds), recalls=tuple(r for r in RECALLS if r <= k))
    return metrics, top, scores
