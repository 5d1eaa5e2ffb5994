"""QVHighlights' official metrics (jayleicn/moment_detr ``standalone_eval``), all queries at once.

Moment retrieval (any dataset: ranked moments Q x k x 2 + scores Q x k against padded GT windows):
  * MR-mAP: per query and tIoU threshold (0.5:0.05:0.95), ActivityNet-style AP over the first 10
    predictions: ranked by score (stable), each takes the unmatched GT window of highest IoU >= the
    threshold, VOC-2011 interpolated precision; mean over queries, and the "average" over thresholds.
  * MR-R1: the first listed prediction against the GT window it overlaps most (first on ties), hit
    when IoU >= threshold (the official "hull" IoU there, equal to IoU when the windows overlap).
  * per GT-window length range, (0, 10] short, (10, 30] middle, (30, 150] long and all ("full"): a
    query enters a range with its windows of that length only.
Highlight detection (per-clip saliency Q x T against annotator scores Q x T x A, 0 outside the
relevant clips), at each level (>= 2 Fair, >= 3 Good, >= 4 VeryGood):
  * HL-mAP: per query and annotator, scikit-learn-style AP (interpolated precision at every distinct
    score that adds a positive; 0 when no clip is positive, 1 when all are), mean over both;
  * HL-Hit1: the top-scored clip is positive for any annotator; mean over queries.

Every per-query figure is bit for bit the official one: the same float operations in the same order,
sums in numpy's pairwise order (``pairwise_sum``), means over queries taken by numpy in the official
order (submission order). The greedy matching loops over the <= 10 prediction ranks only, vectorised
over queries, thresholds and GT windows.

Where the official evaluator is unspecified or crashes, we define (documented in docs/QVHIGHLIGHTS.md
of the integrating change):
  * GT windows of exactly equal IoU with a prediction: the last listed is matched first (the official
    reversed ``argsort``, read with a stable sort; numpy's default sort leaves it to the platform);
  * a length range without any query: every figure of it is None (JSON null; the official crashes);
  * an empty union (a zero-length GT window) gives IoU 0 (the official gives NaN, and counts it a hit);
  * a query without predictions has AP 0 and no R1 / HIT@1 hit (the official crashes or skips it);
  * a video with no clip (duration < 2 s) has saliency AP 0 (the official crashes).
"""
from collections import OrderedDict

import numpy as np
import torch

IOU_THRESHOLDS = tuple(float(f"{t:.2f}") for t in np.linspace(0.5, 0.95, 10))
# name -> (lo, hi]: GT windows of length lo < l <= hi; None: every window (the official "full")
LENGTH_RANGES = OrderedDict([("short", (0, 10)), ("middle", (10, 30)), ("long", (30, 150)), ("full", None)])
SALIENCY_LEVELS = OrderedDict([("Fair", 2), ("Good", 3), ("VeryGood", 4)])  # level name -> minimum score
MAX_PRED_WINDOWS = 10  # predictions per query that enter MR-mAP
CLIP_LENGTH = 2.0  # seconds per saliency clip: a video has int(duration / 2) clips
# the brief: (key, range, metric, threshold key) of the moment-retrieval figures (listed sorted by key, as officially)
MR_BRIEF = (("MR-full-R1@0.5", "full", "MR-R1", "0.5"), ("MR-full-R1@0.7", "full", "MR-R1", "0.7"),
            ("MR-full-mAP", "full", "MR-mAP", "average"), ("MR-full-mAP@0.5", "full", "MR-mAP", "0.5"),
            ("MR-full-mAP@0.75", "full", "MR-mAP", "0.75"), ("MR-long-mAP", "long", "MR-mAP", "average"),
            ("MR-middle-mAP", "middle", "MR-mAP", "average"), ("MR-short-mAP", "short", "MR-mAP", "average"))
PAIRWISE_BLOCK = 128  # numpy's PW_BLOCKSIZE
# queries are processed in chunks of about this many (query x threshold x rank, or query x annotator x
# clip) cells: the temporaries (a few 100 kB) are then reused by the allocator instead of being mapped
# afresh (page faults, half the time otherwise)
CHUNK_CELLS = 2 ** 16


def threshold_key(threshold):
    """The official dict key of an IoU threshold: "0.5", "0.55", ..."""
    return str(float(f"{threshold:.2f}"))


# ------------------------------------------------------------------------------------------------
# building blocks
# ------------------------------------------------------------------------------------------------
def temporal_iou(windows1, windows2):
    """IoU of every window of ``windows1`` (Q x N x 2) with every window of ``windows2`` (Q x M x 2):
    Q x N x M, the official ``compute_temporal_iou_batch_cross`` operations; 0 where the union is empty."""
    len1 = windows1[..., 1] - windows1[..., 0]
    len2 = windows2[..., 1] - windows2[..., 0]
    lo = torch.maximum(windows1[..., :, None, 0], windows2[..., None, :, 0])
    hi = torch.minimum(windows1[..., :, None, 1], windows2[..., None, :, 1])
    inter = (hi - lo).clamp(min=0)
    union = len1[..., :, None] + len2[..., None, :] - inter
    return torch.where(union != 0, inter / union, torch.zeros_like(inter))


def hull_iou(windows1, windows2):
    """IoU of paired windows (... x 2) as the official R1 computes it: intersection over the hull of
    the two windows (their union when they overlap), 0 where the hull is empty."""
    inter = (torch.minimum(windows1[..., 1], windows2[..., 1]) - torch.maximum(windows1[..., 0], windows2[..., 0]))
    inter = inter.clamp(min=0)
    hull = torch.maximum(windows1[..., 1], windows2[..., 1]) - torch.minimum(windows1[..., 0], windows2[..., 0])
    return torch.where(hull != 0, inter / hull, torch.zeros_like(inter))


def compact(values, keep):
    """Each row's kept entries moved to its front, in order, zeros after; and how many were kept."""
    shape = values.shape
    values, keep = values.reshape(-1, shape[-1]), keep.reshape(-1, shape[-1])
    width = shape[-1]
    slots = keep.double().cumsum(-1).long() - 1  # (a float cumsum: much faster than an integer one here)
    slots = torch.where(keep, slots, torch.full_like(slots, width))
    out = values.new_zeros(values.shape[0], width + 1)
    out.scatter_(-1, slots, values * keep)
    return out[:, :width].reshape(shape), keep.sum(-1).reshape(shape[:-1])


def cummax(values):
    """Running maximum along the last dimension (numpy's: torch's cummax also tracks indices, slowly)."""
    return torch.from_numpy(np.maximum.accumulate(values.contiguous().numpy(), axis=-1))


def reverse_cummax(values):
    """Maximum of each entry and those after it along the last dimension."""
    flipped = values.flip(-1).numpy()
    return torch.from_numpy(np.maximum.accumulate(flipped, axis=-1, out=flipped)).flip(-1)


def sequential_sum(values):
    """((0 + v0) + v1) + ... along the last dimension, in that order (torch's cumsum is a plain scan)."""
    return values.cumsum(-1)[..., -1] if values.shape[-1] else values.new_zeros(values.shape[:-1])


def pairwise_sum(values, counts):
    """Sum of the first ``counts[r]`` entries of each row of ``values`` (R x L, zeros past them), bit
    for bit numpy's ``np.sum`` of those entries: left to right under 8 values, 8 partial sums of the
    columns j, j + 8, ... of the whole blocks of 8, added as a tree, then the rest left to right, up to
    128 values; above, the sum of two halves (multiples of 8)."""
    rows, width = values.shape
    counts = counts.long()
    out = torch.zeros(rows, dtype=values.dtype)
    large = counts > PAIRWISE_BLOCK
    for n in torch.unique(counts[large]).tolist():  # numpy splits long rows in halves: one group per length
        sel = (counts == n).nonzero().squeeze(1)
        half = n // 2 - (n // 2) % 8
        part = values[sel]
        out[sel] = (pairwise_sum(part[:, :half], torch.full((len(sel),), half))
                    + pairwise_sum(part[:, half:n], torch.full((len(sel),), n - half)))
    small = ~large
    if not small.any():
        return out
    n = counts[small]
    blocks = -(-min(width, PAIRWISE_BLOCK) // 8)
    v = values[small, :8 * blocks]
    v = torch.cat([v, v.new_zeros(v.shape[0], 8 * (blocks + 1) - v.shape[1])], 1)  # + a block of zeros
    whole = n // 8
    acc = v.view(-1, blocks + 1, 8).cumsum(1).gather(1, (whole - 1).clamp(min=0)[:, None, None].expand(-1, 1, 8))[:, 0]
    tree = ((acc[:, 0] + acc[:, 1]) + (acc[:, 2] + acc[:, 3])) + ((acc[:, 4] + acc[:, 5]) + (acc[:, 6] + acc[:, 7]))
    rest = v.gather(1, 8 * whole[:, None] + torch.arange(7))  # zeros past each row's end
    blocked = sequential_sum(torch.cat([tree[:, None], rest], 1))
    out[small] = torch.where(n < 8, sequential_sum(v[:, :7]), blocked)
    return out + 0.0  # numpy adds the sum to its initial 0


# ------------------------------------------------------------------------------------------------
# moment retrieval
# ------------------------------------------------------------------------------------------------
def _as_float64(x):
    return torch.as_tensor(x).to(torch.float64)


def _greedy_true_positives(ious, present, thresholds):
    """Q x T x K bool: prediction k (in rank order) is a true positive at threshold t.

    ious Q x K x G (padding GT windows at -1), present Q x K. Each prediction, in rank order, takes the
    free GT window of highest IoU >= the threshold; on exact ties the last listed one (the official
    walks the reversed argsort of the IoUs). A loop over the K ranks, all queries and thresholds at once.
    """
    q, k, g = ious.shape
    t = len(thresholds)
    ious = ious.flip(-1)  # reversed GT order: argmax's first maximum is the last listed window
    matched = torch.zeros(q, t, g, dtype=torch.bool)
    tp = torch.zeros(q, t, k, dtype=torch.bool)
    gt_index = torch.arange(g)
    above = ious[:, :, None, :] >= thresholds[None, None, :, None]  # Q x K x T x G
    for rank in range(k):
        free = above[:, rank] & ~matched & present[:, rank, None, None]
        key = torch.where(free, ious[:, rank, None, :], torch.full_like(ious[:, rank, None, :], float("-inf")))
        hit = free.any(-1)
        tp[:, :, rank] = hit
        matched |= (gt_index == key.argmax(-1)[..., None]) & hit[..., None]
    return tp


def detection_average_precision(pred_windows, pred_scores, gt_windows, gt_mask, pred_mask=None,
                                iou_thresholds=IOU_THRESHOLDS, max_pred_windows=MAX_PRED_WINDOWS):
    """Per-query ActivityNet-style AP (fractions), Q x len(iou_thresholds) float64.

    pred_windows Q x K x 2 and pred_scores Q x K in listed order (only the first ``max_pred_windows``
    count), pred_mask Q x K (absent predictions; default all present); gt_windows Q x G x 2 with
    gt_mask Q x G. A query without GT windows gets AP 0.
    """
    pred_windows, pred_scores = _as_float64(pred_windows), _as_float64(pred_scores)
    gt_windows, gt_mask = _as_float64(gt_windows), torch.as_tensor(gt_mask, dtype=torch.bool)
    if pred_mask is None:
        pred_mask = torch.ones(pred_scores.shape, dtype=torch.bool)
    pred_mask = torch.as_tensor(pred_mask, dtype=torch.bool)[:, :max_pred_windows]
    pred_windows, pred_scores = pred_windows[:, :max_pred_windows], pred_scores[:, :max_pred_windows]
    q, k = pred_scores.shape
    thresholds = torch.tensor(iou_thresholds, dtype=torch.float64)
    t = len(thresholds)
    if q == 0 or k == 0 or gt_windows.shape[1] == 0:
        return torch.zeros(q, t, dtype=torch.float64)
    # by score, descending; equal scores in listed order (the official stable sort); absent ones last
    order = torch.where(pred_mask, -pred_scores, torch.full_like(pred_scores, float("inf"))).sort(
        dim=1, stable=True).indices
    present = pred_mask.gather(1, order)
    windows = pred_windows.gather(1, order[..., None].expand(q, k, 2))
    # each query's GT windows moved to the front (listed order kept), then matched in groups of queries
    # of about the same number of windows: most queries have one or two, a few have twenty
    starts, num_gt = compact(gt_windows[..., 0], gt_mask)
    ends, _ = compact(gt_windows[..., 1], gt_mask)
    gts = torch.stack([starts, ends], -1)
    tp = torch.zeros(q, t, k, dtype=torch.bool)
    low = 0
    while low < int(num_gt.max()):
        high = max(1, 2 * low)
        rows = ((num_gt > low) & (num_gt <= high)).nonzero().squeeze(1)
        if len(rows):
            width = min(high, gts.shape[1])
            ious = temporal_iou(windows[rows], gts[rows, :width])
            ious = ious.masked_fill(~(torch.arange(width) < num_gt[rows, None])[:, None, :], -1.0)
            tp[rows] = _greedy_true_positives(ious, present[rows], thresholds)
        low = high
    tp_sum = tp.double().cumsum(-1)
    seen = present.double().cumsum(-1).clamp(min=1)  # predictions so far (absent ones come last)
    precision = tp_sum / seen[:, None, :]
    best_after = reverse_cummax(precision)  # interpolated: max over this rank and later
    recall = tp_sum / num_gt.double().clamp(min=1)[:, None, None]
    # the area steps: recall moves at the true positives only, elsewhere the step is exactly 0
    steps = recall * best_after
    steps[..., 1:] = (recall[..., 1:] - recall[..., :-1]) * best_after[..., 1:]
    # numpy sums the steps (and a +0 one where recall ends below 1: the official curve ends at recall
    # 1 with precision 0) left to right when there are fewer than 8, where interleaved zeros change
    # nothing; with 8 or more (7 true positives, rare) in its pairwise order, from the steps compacted
    ap = sequential_sum(steps)
    ends_below = recall[..., -1] != 1
    many = (tp.sum(-1) + ends_below) >= 8
    if many.any():
        values = torch.cat([steps[many], torch.zeros(int(many.sum()), 1, dtype=torch.float64)], -1)
        terms, counts = compact(values, torch.cat([tp[many], ends_below[many][:, None]], -1))
        ap[many] = pairwise_sum(terms, counts)
    ap = ap + 0.0  # numpy adds the sum to its initial 0
    return torch.where(num_gt[:, None] > 0, ap, torch.zeros_like(ap))


def _chunked(function, cells_per_query, *tensors):
    """``function`` over chunks of queries (dim 0 of every tensor, None passed as is), concatenated."""
    q = next(len(x) for x in tensors if x is not None)
    step = max(1, CHUNK_CELLS // max(cells_per_query, 1))
    if q <= step:
        return function(*tensors)
    return torch.cat([function(*(None if x is None else x[i:i + step] for x in tensors)) for i in range(0, q, step)])


def top1_hits(pred_windows, gt_windows, gt_mask, pred_mask=None, iou_thresholds=IOU_THRESHOLDS):
    """Q x len(iou_thresholds) bool: the first listed prediction hits the GT window it overlaps most."""
    pred_windows, gt_windows = _as_float64(pred_windows), _as_float64(gt_windows)
    gt_mask = torch.as_tensor(gt_mask, dtype=torch.bool)
    q, g = gt_mask.shape
    thresholds = torch.tensor(iou_thresholds, dtype=torch.float64)
    if q == 0 or g == 0 or pred_windows.shape[1] == 0:
        return torch.zeros(q, len(thresholds), dtype=torch.bool)
    first = pred_windows[:, 0]  # the official takes the first listed window, whatever its score
    ious = temporal_iou(first[:, None], gt_windows)[:, 0].masked_fill(~gt_mask, float("-inf"))
    best = ious.argmax(1)  # first on ties
    target = gt_windows.gather(1, best[:, None, None].expand(q, 1, 2))[:, 0]
    hits = hull_iou(first, target)[:, None] >= thresholds
    present = gt_mask.any(1)
    if pred_mask is not None:
        present &= torch.as_tensor(pred_mask, dtype=torch.bool)[:, 0]
    return hits & present[:, None]


def _none_block(iou_thresholds):
    return {"MR-mAP": OrderedDict([(threshold_key(t), None) for t in iou_thresholds] + [("average", None)]),
            "MR-R1": OrderedDict((threshold_key(t), None) for t in iou_thresholds)}


def moment_retrieval_metrics(pred_windows, pred_scores, gt_windows, gt_mask, pred_mask=None,
                             iou_thresholds=IOU_THRESHOLDS, length_ranges=LENGTH_RANGES,
                             max_pred_windows=MAX_PRED_WINDOWS):
    """The official moment-retrieval figures (percent, unrounded) of ranked moments of any model.

    pred_windows Q x K x 2 seconds and pred_scores Q x K, in listed (ranked) order; pred_mask Q x K
    marks present predictions (default all); gt_windows Q x G x 2 with gt_mask Q x G (padding False).
    ``length_ranges``: name -> (lo, hi] GT-window lengths in seconds, or None for all windows.
    Returns {range: {"MR-mAP": {"0.5": ..., ..., "average": ...}, "MR-R1": {"0.5": ..., ...}}}; a range
    that no query enters has None everywhere. Queries without any GT window enter no range.
    """
    pred_windows, pred_scores, gt_windows = _as_float64(pred_windows), _as_float64(pred_scores), _as_float64(gt_windows)
    gt_mask = torch.as_tensor(gt_mask, dtype=torch.bool)
    if pred_mask is None:
        pred_mask = torch.ones(pred_scores.shape, dtype=torch.bool)
    pred_mask = torch.as_tensor(pred_mask, dtype=torch.bool)
    lengths = gt_windows[..., 1] - gt_windows[..., 0]
    rows, masks, names = [], [], []
    for name, bounds in length_ranges.items():  # every range in one batch: the queries it keeps, its windows
        mask = gt_mask if bounds is None else gt_mask & (lengths > bounds[0]) & (lengths <= bounds[1])
        kept = mask.any(1).nonzero().squeeze(1)
        rows.append(kept)
        masks.append(mask[kept])
        names.append(name)
    index = torch.cat(rows)
    range_mask = torch.cat(masks)
    ap = detection_average_precision(pred_windows[index], pred_scores[index], gt_windows[index], range_mask,
                                     pred_mask[index], iou_thresholds, max_pred_windows).numpy()
    hits = top1_hits(pred_windows[index], gt_windows[index], range_mask, pred_mask[index], iou_thresholds).numpy()
    out = OrderedDict()
    start = 0
    for name, kept in zip(names, rows):
        stop = start + len(kept)
        if stop == start:
            out[name] = _none_block(iou_thresholds)
            continue
        ap_per_threshold = ap[start:stop].mean(0)  # numpy: a plain sum over queries in order, as officially
        mr_map = OrderedDict((threshold_key(t), 100 * v) for t, v in zip(iou_thresholds, ap_per_threshold))
        mr_map["average"] = 100 * np.mean(ap_per_threshold)
        recall = hits[start:stop].mean(0)
        out[name] = {"MR-mAP": mr_map,
                     "MR-R1": OrderedDict((threshold_key(t), v * 100) for t, v in zip(iou_thresholds, recall))}
        start = stop
    return out


# ------------------------------------------------------------------------------------------------
# highlight detection
# ------------------------------------------------------------------------------------------------
def _saliency_average_precision(scores, relevant, clip_mask):
    """``saliency_average_precision`` of one chunk of queries.

    scikit-learn's curve has one point per distinct score s: true positives tp(s) and predictions
    n(s) at scores >= s; ``get_ap`` averages, over the points whose run of equal scores holds a
    positive, the highest precision tp / n at that score or any lower one, from the lowest score up.
    Here the clips are sorted ascending (the padding first), which is that order.
    """
    scores = _as_float64(scores)
    relevant = torch.as_tensor(relevant, dtype=torch.bool)
    clip_mask = torch.as_tensor(clip_mask, dtype=torch.bool)
    q, t, a = relevant.shape
    if q == 0 or t == 0:
        return torch.zeros(q, a, dtype=torch.float64)
    num_clips = clip_mask.sum(1)
    ranked, order = scores.masked_fill(~clip_mask, float("-inf")).sort(dim=1)
    labels = (relevant & clip_mask[..., None]).transpose(1, 2).gather(2, order[:, None, :].expand(q, a, t))
    labels = labels.double()  # Q x A x T by score ascending (float: exact counts, faster cumsums)
    position = torch.arange(t)
    inside = position >= (t - num_clips)[:, None]
    differs = ranked[:, 1:] != ranked[:, :-1]
    run_start = inside & torch.cat([torch.ones(q, 1, dtype=torch.bool), differs], 1)
    run_end = inside & torch.cat([differs, torch.ones(q, 1, dtype=torch.bool)], 1)
    first_of_run = torch.where(run_start, position, torch.zeros_like(position)).cummax(1).values  # Q x T
    positives = labels.sum(-1, keepdim=True)
    at_or_above = positives - labels.cumsum(-1) + labels  # positives scored >= each clip's score
    above = at_or_above - labels  # ... > at the run's end: the next run's count
    tp = at_or_above.gather(-1, first_of_run[:, None, :].expand(q, a, t))
    precision = tp / (t - first_of_run).double()[:, None] * run_end[:, None]  # at run ends only (else 0)
    best_below = cummax(precision)  # interpolated: max over this score and the lower ones
    moves = run_end[:, None] & (tp > above)
    terms, counts = compact(best_below, moves)
    sums = pairwise_sum(terms.reshape(q * a, t), counts.reshape(q * a)).reshape(q, a)
    ap = sums / counts.clamp(min=1)
    positives = positives[..., 0]
    ap = torch.where(positives == num_clips[:, None], torch.ones_like(ap), ap)
    return torch.where((positives == 0) | (num_clips[:, None] == 0), torch.zeros_like(ap), ap)


def saliency_average_precision(scores, relevant, clip_mask):
    """Per-query, per-annotator AP (fractions), Q x A float64, the official ``get_ap``.

    scores Q x T (already the GT's length: the official cuts a longer prediction and pads a shorter
    one with 0), relevant Q x T x A bool, clip_mask Q x T (each row's first clips). 0 where no clip
    is relevant (or the video has none), 1 where all are.
    """
    relevant = torch.as_tensor(relevant)
    return _chunked(_saliency_average_precision, relevant.shape[1] * relevant.shape[2], torch.as_tensor(scores),
                    relevant, torch.as_tensor(clip_mask))


def top_clip_hits(pred_saliency, pred_mask, relevant, clip_mask):
    """Q bool: the top-scored predicted clip (first on ties, over every predicted clip) is relevant for
    any annotator; a top clip past the video's clips is a miss."""
    pred_saliency = _as_float64(pred_saliency)
    pred_mask = torch.as_tensor(pred_mask, dtype=torch.bool)
    relevant = torch.as_tensor(relevant, dtype=torch.bool) & torch.as_tensor(clip_mask, dtype=torch.bool)[..., None]
    q, t, _ = relevant.shape
    if q == 0 or t == 0 or pred_saliency.shape[1] == 0:
        return torch.zeros(q, dtype=torch.bool)
    top = pred_saliency.masked_fill(~pred_mask, float("-inf")).argmax(1)
    inside = (top < t) & pred_mask.any(1)
    return relevant[torch.arange(q), top.clamp(max=t - 1)].any(-1) & inside


def highlight_metrics(pred_saliency, gt_saliency, clip_mask, pred_mask=None, levels=SALIENCY_LEVELS):
    """The official highlight-detection figures (percent, unrounded).

    pred_saliency Q x W per-clip scores with pred_mask Q x W (each row's predicted clips, first ones;
    default: clip_mask); gt_saliency Q x W x A annotator scores (0 outside the relevant clips) with
    clip_mask Q x W (the video's int(duration / 2) clips). Returns {"HL-min-<level>": {"HL-mAP": ...,
    "HL-Hit1": ...}} for each (name, minimum score) of ``levels``; None when Q is 0.
    """
    pred_saliency, gt_saliency = _as_float64(pred_saliency), _as_float64(gt_saliency)
    clip_mask = torch.as_tensor(clip_mask, dtype=torch.bool)
    pred_mask = clip_mask if pred_mask is None else torch.as_tensor(pred_mask, dtype=torch.bool)
    q, _, a = gt_saliency.shape
    # the AP's input: the prediction within the video's clips, 0 past its own end (the official padding)
    aligned = torch.where(pred_mask & clip_mask, pred_saliency, torch.zeros_like(pred_saliency))
    relevant = torch.cat([gt_saliency >= level for level in levels.values()], -1)  # Q x W x (levels * A)
    ap = saliency_average_precision(aligned, relevant, clip_mask).reshape(q, len(levels), a)
    out = OrderedDict()
    for i, name in enumerate(levels):
        hits = top_clip_hits(pred_saliency, pred_mask, relevant[..., i * a:(i + 1) * a], clip_mask)
        out[f"HL-min-{name}"] = OrderedDict([
            ("HL-mAP", 100 * np.mean(ap[:, i].contiguous().numpy()) if q else None),  # numpy's pairwise mean
            ("HL-Hit1", 100 * hits.double().mean().item() if q else None)])
    return out


# ------------------------------------------------------------------------------------------------
# the official output
# ------------------------------------------------------------------------------------------------
def round_metrics(metrics):
    """The official rounding, recursively: percent to 2 decimals as a float (None stays None)."""
    if isinstance(metrics, dict):
        return OrderedDict((k, round_metrics(v)) for k, v in metrics.items())
    return None if metrics is None else float(f"{metrics:.2f}")


def official_metrics(moment_retrieval=None, highlight=None):
    """The official result dict from ``moment_retrieval_metrics`` and/or ``highlight_metrics`` output
    (rounded here): "brief" (the moment-retrieval keys sorted, then the highlight ones), then the
    blocks sorted by name."""
    blocks, brief = OrderedDict(), OrderedDict()
    if moment_retrieval is not None:
        moment_retrieval = round_metrics(moment_retrieval)
        blocks.update(moment_retrieval)
        for key, name, metric, sub in sorted(MR_BRIEF):
            if name in moment_retrieval:
                brief[key] = moment_retrieval[name][metric][sub]
    if highlight is not None:
        highlight = round_metrics(highlight)
        blocks.update(highlight)
        for name, values in highlight.items():
            for key, value in values.items():
                brief[f"{name}-{key.split('-')[1]}"] = value
    out = OrderedDict(brief=brief)
    out.update(sorted(blocks.items()))
    return out


def columns_tensors(pred, truth, clip_length=CLIP_LENGTH):
    """Padded tensors for the metrics from validated columns (mmn.structures.qvh_records), one query per
    row, both in the same order: ``pred`` {"pred_relevant_windows", "pred_saliency_scores": Ragged},
    ``truth`` {"duration": array, "relevant_windows", "relevant_clip_ids", "saliency_scores": Ragged}.

    Returns a dict: "moments" (the ``moment_retrieval_metrics`` arguments) when ``pred`` has windows,
    "saliency" (the ``highlight_metrics`` arguments) when it has saliency scores.
    """
    out = {}
    if "pred_relevant_windows" in pred:
        windows, pred_mask = pred["pred_relevant_windows"].head(MAX_PRED_WINDOWS).padded()
        gt, gt_mask = truth["relevant_windows"].padded()
        windows = torch.from_numpy(windows)
        out["moments"] = dict(pred_windows=windows[..., :2], pred_scores=windows[..., 2],
                              pred_mask=torch.from_numpy(pred_mask), gt_windows=torch.from_numpy(gt),
                              gt_mask=torch.from_numpy(gt_mask))
    if "pred_saliency_scores" in pred:
        num_clips = (truth["duration"] / clip_length).astype(np.int64)  # int() of a positive float: truncation
        scores = pred["pred_saliency_scores"]
        width = max(int(num_clips.max()), int(scores.counts.max()), 1)
        pred_saliency, pred_mask = scores.padded(width)
        clips = truth["relevant_clip_ids"]
        gt = np.zeros((len(num_clips), width, truth["saliency_scores"].values.shape[1]))
        gt[np.repeat(np.arange(len(num_clips)), clips.counts), clips.values] = truth["saliency_scores"].values
        out["saliency"] = dict(pred_saliency=torch.from_numpy(pred_saliency), gt_saliency=torch.from_numpy(gt),
                               clip_mask=torch.arange(width) < torch.from_numpy(num_clips)[:, None],
                               pred_mask=torch.from_numpy(pred_mask))
    return out


def score_columns(pred, truth):
    """The official result dict (rounded) of validated, matched columns (see ``columns_tensors``)."""
    tensors = columns_tensors(pred, truth)
    mr = moment_retrieval_metrics(**tensors["moments"]) if "moments" in tensors else None
    hl = highlight_metrics(**tensors["saliency"]) if "saliency" in tensors else None
    return official_metrics(mr, hl)


def eval_submission(submission, ground_truth, match_number=True, source=("submission", "ground truth"),
                    lines=(None, None)):
    """The official ``eval_submission``: the rounded result dict of submission rows against GT rows.

    Both are lists of dicts in the official jsonl form, validated first (mmn.structures.qvh_records: a
    bad row raises QVHRecordError naming ``source`` and the row, by its line when ``lines`` gives them).
    ``match_number``: every GT qid must be predicted (else only the shared qids are scored). Figures
    are computed in submission order, as the official single-process run does.
    """
    from ..structures.qvh_records import Ragged, match_indices, submission_fields, validate_ground_truth, \
        validate_submission

    windows, saliency = submission_fields(submission, source[0], lines[0])
    ground_truth, truth = validate_ground_truth(ground_truth, source[1], windows, saliency, lines[1])
    submission, pred = validate_submission(submission, source[0], ground_truth, lines[0])
    sub_index, gt_index = match_indices(submission, ground_truth, source, match_number)
    pred = {key: column.take(sub_index) for key, column in pred.items()}
    truth = {key: column.take(gt_index) if isinstance(column, Ragged) else column[gt_index]
             for key, column in truth.items()}
    return score_columns(pred, truth)
