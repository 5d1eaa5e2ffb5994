"""2D-TAN's evaluation semantics (official ``train.py:151-168`` and ``lib/core/eval.py``), vectorised.

- Candidates: every upper-triangle cell (start <= end) of the T x T ``joint_prob``, the masked ones
  included (they score exactly 0 and come last), ranked by score. ``zero_score_candidates=False``
  keeps only the cells with a non-zero score (MMN's rule).
- Times: cell (i, j) is [(i / T) x d, ((j + 1) / T) x d] in float32 (the official eval grid, which
  rounds differently from the targets' (k x d) / T).
- NMS: greedy in rank order; a candidate is dropped when its IoU with a kept one is > the threshold,
  the IoU being inter / (len_a + len_b - inter) in float64 (``eval.py:nms``); at most ``k`` kept.
- Recall: the shared ``mmn.evaluation.recall_table`` with ``strict`` (TEST.STRICT_IOU True in the 2D-TAN
  configs: a hit needs IoU > m, ``eval.py:68``; False: >= m, the framework's tables). The moments are
  returned in float64 (exact copies of the float32 times), so its IoU is taken in float64 against the
  annotation's float64 times, as the official numpy code does.

Ties between equal scores are broken in row-major cell order (a stable sort); the official numpy
argsort (default kind, reversed) leaves their order to the numpy build, so no order is "the" official one.
"""
import torch

from ...evaluation.score_maps import queries_per_chunk


def candidate_cells(num_clips):
    """(rows, cols) of the upper-triangle cells in row-major order (C = T (T + 1) / 2 each)."""
    rows, cols = torch.triu_indices(num_clips, num_clips)
    return rows, cols


def eval_time_grid(durations, num_clips):
    """Q x T x T x 2 float32 seconds of every cell: [(i / T) x d, ((j + 1) / T) x d] (official eval)."""
    d = torch.as_tensor(durations, dtype=torch.float64).float()[:, None, None]
    k = torch.arange(num_clips + 1, dtype=torch.float32) / num_clips
    start = (k[:-1][None, :, None] * d).expand(-1, num_clips, num_clips)
    end = (k[1:][None, None, :] * d).expand(-1, num_clips, num_clips)
    return torch.stack([start, end], dim=-1)


def rank_candidates(score_maps, durations, zero_score_candidates=True):
    """All candidates of each query in rank order: (times Q x C x 2 float32, scores Q x C, valid Q x C).

    ``valid`` is False for the cells left out (score 0 when ``zero_score_candidates`` is False); they
    sort last.
    """
    q, n, _ = score_maps.shape
    rows, cols = candidate_cells(n)
    scores = score_maps[:, rows, cols]
    valid = torch.ones_like(scores, dtype=torch.bool) if zero_score_candidates else scores != 0
    keys = scores.masked_fill(~valid, float("-inf"))
    order = torch.sort(keys, dim=1, descending=True, stable=True).indices
    times = eval_time_grid(durations, n)[:, rows, cols]  # Q x C x 2
    return (times.gather(1, order[..., None].expand(-1, -1, 2)), scores.gather(1, order), valid.gather(1, order))


def greedy_nms(times, scores, valid, nms_thresh, k):
    """The first ``k`` moments kept by the official greedy NMS over candidates in rank order.

    times: Q x C x 2 (any float dtype; the IoU is taken in float64), scores, valid: Q x C.
    Returns (moments Q x k x 2 float64, NaN where fewer than k; scores Q x k, -inf there).
    """
    q = times.shape[0]
    t = times.double()
    x1, x2 = t[..., 0], t[..., 1]
    lengths = x2 - x1
    alive = valid.clone()
    rows = torch.arange(q)
    moments = torch.full((q, k, 2), float("nan"), dtype=torch.float64)
    kept = torch.full((q, k), float("-inf"), dtype=scores.dtype)
    for step in range(k):
        has_any = alive.any(dim=1)
        first = alive.to(torch.int8).argmax(dim=1)  # the best candidate still alive
        moments[has_any, step] = t[rows, first][has_any]
        kept[has_any, step] = scores[rows, first][has_any]
        if step == k - 1:
            break
        inter = (torch.minimum(x2, x2[rows, first][:, None]) - torch.maximum(x1, x1[rows, first][:, None])).clamp(min=0)
        overlap = inter / (lengths[rows, first][:, None] + lengths - inter)
        suppress = overlap > nms_thresh
        suppress[rows, first] = True
        alive &= ~(suppress & has_any[:, None])
    return moments, kept


def top_moments(score_maps, durations, nms_thresh, k=5, zero_score_candidates=True):
    """score_maps: Q x T x T joint probabilities -> (moments Q x k x 2 float64 seconds, scores Q x k)."""
    q, n, _ = score_maps.shape
    durations = torch.as_tensor(durations, dtype=torch.float64)
    chunk = queries_per_chunk(n * (n + 1) // 2)  # bounds the Q x C temporaries (C = T (T + 1) / 2 candidates)
    parts = []
    for s in range(0, q, chunk):
        times, scores, valid = rank_candidates(score_maps[s:s + chunk].float().cpu(), durations[s:s + chunk],
                                               zero_score_candidates)
        parts.append(greedy_nms(times, scores, valid, nms_thresh, k))
    if not parts:
        return torch.empty(0, k, 2, dtype=torch.float64), torch.empty(0, k)
    return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
