"""Greedy NMS over 2D score maps, batched over all queries in torch.

Greedy NMS only ever needs the first ``k`` kept moments for R@k; the k-th kept moment is the best
candidate not suppressed by the k-1 kept before it. So instead of the official per-query Python
loop over every candidate, we run k vectorised rounds over all queries at once. The kept moments
and their order are those of the official algorithm whenever no two candidates in the prefix it reads
have exactly equal scores (fp32): with an exact tie the official order comes from numpy's
unstable argsort, ours is the stable row-major order (a documented difference, see the README).
"""
import torch

# queries are evaluated in chunks of about this many cells (16 MB of float32): the temporaries stay
# small enough to be reused by the allocator instead of being mapped afresh (page faults) each time
CHUNK_CELLS = 2 ** 22


def queries_per_chunk(cells_per_query):
    """Queries per chunk so that a chunk's working set (queries x cells) stays around CHUNK_CELLS."""
    return max(1, CHUNK_CELLS // max(cells_per_query, 1))


def score_map_top_moments(score_maps, durations, nms_thresh, k=5, chunk=None, prefix=32):
    """First ``k`` moments kept by greedy NMS of each query's score map.

    score_maps: Q x N x N fused scores (candidates are the non-zero cells, as officially);
    durations: Q seconds. Returns (moments Q x k x 2 seconds, scores Q x k); rows with fewer than
    k surviving moments are padded with NaN moments and -inf scores.

    The kept moments and their order are those of the official per-query loop (candidates sorted by
    score, descending; a candidate is kept unless an earlier kept one overlaps it by IoU > nms_thresh),
    except that exact score ties are broken in row-major cell order, where the official unstable
    sort may pick another order. Only cells that are a candidate of some query are
    looked at, and only a prefix of each query's sorted candidates: the first ``prefix`` by score,
    then 4x more for the queries that have not found ``k`` moments in it, up to all of them.
    """
    q, n, _ = score_maps.shape
    if chunk is None:
        chunk = queries_per_chunk(n * n)
    if q > chunk:
        parts = [score_map_top_moments(score_maps[s:s + chunk], durations[s:s + chunk], nms_thresh, k, chunk, prefix)
                 for s in range(0, q, chunk)]
        return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
    scores = score_maps.reshape(q, n * n)
    valid = scores != 0
    cells = valid.any(dim=0).nonzero().squeeze(1)  # cells that are a candidate of some query, row-major
    scores, valid = scores.index_select(1, cells), valid.index_select(1, cells)  # Q x K
    keys = scores.masked_fill(~valid, float("-inf"))
    # moment of each cell as the official score2d_to_moments_scores: [i, j + 1] * d / N in float32
    cell_start, cell_end = (cells // n).float(), (cells % n + 1).float()
    durations = torch.as_tensor(durations, dtype=torch.float64).float()

    kept_moments = torch.full((q, k, 2), float("nan"), dtype=torch.float32)
    kept_scores = torch.full((q, k), float("-inf"), dtype=scores.dtype)
    rows = torch.arange(q)
    width = min(max(prefix, k), keys.shape[1])
    while len(rows):
        row_keys = keys[rows]
        if width >= keys.shape[1]:  # every candidate: a full stable sort
            order = torch.sort(row_keys, dim=1, descending=True, stable=True).indices
            complete_prefix = exact = torch.ones(len(rows), dtype=torch.bool)
        else:
            order, complete_prefix, exact = _sorted_prefix(row_keys, width)
        found, moments, top_scores = _greedy_nms_rounds(
            scores[rows].gather(1, order), valid[rows].gather(1, order), cell_start[order], cell_end[order],
            durations[rows], n, nms_thresh, k)
        # a row is final once its prefix is exact (ties at the boundary go on with more candidates)
        # and holds k kept moments or every candidate
        done = ((found == k) | complete_prefix) & exact
        kept_moments[rows[done]] = moments[done]
        kept_scores[rows[done]] = top_scores[done]
        rows = rows[~done]
        width = min(width * 4, keys.shape[1])
    return kept_moments, kept_scores


def _sorted_prefix(keys, width):
    """The first ``width`` entries of each row of ``keys`` in stable descending order.

    Returns (order R x width, complete R: the prefix holds every candidate of the row, exact R: the
    prefix is exactly the first ``width`` of the stable order; False where ties at the boundary value
    leave topk's choice ambiguous).
    """
    values, index = keys.topk(width, dim=1)
    boundary = values[:, -1]
    complete = torch.isneginf(boundary)  # the rest of the row is no candidate
    exact = complete | ((keys >= boundary[:, None]).sum(dim=1) == width)
    position = index.sort(dim=1).values  # the selected cells in row-major order, then a stable sort by key
    order = position.gather(1, keys.gather(1, position).sort(dim=1, descending=True, stable=True).indices)
    return order, complete, exact


def _greedy_nms_rounds(scores, alive, cell_start, cell_end, durations, n, nms_thresh, k):
    """k rounds of greedy NMS over candidates already in score order (R x W each).

    Returns (number kept R, moments R x k x 2 NaN-padded, scores R x k -inf-padded).
    """
    r = scores.shape[0]
    starts = cell_start * durations[:, None] / n
    ends = cell_end * durations[:, None] / n
    rows = torch.arange(r)
    moments = torch.full((r, k, 2), float("nan"), dtype=torch.float32)
    kept = torch.full((r, k), float("-inf"), dtype=scores.dtype)
    found = torch.zeros(r, dtype=torch.long)
    for step in range(k):
        has_any = alive.any(dim=1)
        first = alive.to(torch.int8).argmax(dim=1)  # first alive in score order
        best_start, best_end = starts[rows, first], ends[rows, first]
        moments[has_any, step, 0] = best_start[has_any]
        moments[has_any, step, 1] = best_end[has_any]
        kept[has_any, step] = scores[rows, first][has_any]
        found += has_any
        if step == k - 1:
            break
        # greedy NMS suppresses later candidates with IoU > thresh (segment_iou's arithmetic); the kept one leaves too
        inter = torch.minimum(ends, best_end[:, None]) - torch.maximum(starts, best_start[:, None])
        union = torch.maximum(ends, best_end[:, None]) - torch.minimum(starts, best_start[:, None])
        suppress = inter.clamp(min=0) / union > nms_thresh
        suppress[rows, first] = True
        alive &= ~(suppress & has_any[:, None])
    return found, moments, kept
