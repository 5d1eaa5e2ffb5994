"""Plain, loop-based implementations of the official algorithms.

Written from the official code's behaviour (docs/MMN_SPEC.md, MCG-NJU/MMN), used only to check the
vectorised code in tests/ and to time against it in benchmarks/; never on a hot path. Each follows the
official code step by step, with its costs kept (Python loops per video and per sentence), and uses
nothing of the package, so that the package is never checked against itself.

Where the official code has a fault listed in MMN_SPEC.md ("Known faults") it is not copied: a query
with fewer kept moments than a recall rank counts a missing moment as a miss instead of crashing.

The QVHighlights section (``qvh_*``, numpy) is jayleicn/moment_detr's ``standalone_eval`` (eval.py,
utils.py) written plainly: a Python loop per query, its ``multiprocessing.Pool`` as an option, and
scikit-learn's ``precision_recall_curve`` re-expressed in numpy. One choice where the official code is
unspecified: GT windows of exactly equal IoU with a prediction are visited last-listed first (the
official reversed ``argsort`` of the IoUs, read with a stable sort; numpy's default sort leaves that
order to the platform).
"""
import copy
import functools
import multiprocessing
from collections import OrderedDict, defaultdict

import numpy as np
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


# ================================================================================================
# QVHighlights: moment_detr standalone_eval (eval.py, utils.py), one query at a time
# ================================================================================================
QVH_IOU_THRESHOLDS = tuple(float(f"{t:.2f}") for t in np.linspace(0.5, 0.95, 10))
QVH_LENGTH_RANGES = (("short", (0, 10)), ("middle", (10, 30)), ("long", (30, 150)), ("full", (0, 150)))
QVH_SALIENCY_LEVELS = (("Fair", 2), ("Good", 3), ("VeryGood", 4))


def qvh_iou_cross(spans1, spans2):
    """N x M IoU of spans (N x 2, M x 2); union = the two lengths minus the intersection, unguarded."""
    len1 = spans1[:, 1] - spans1[:, 0]
    len2 = spans2[:, 1] - spans2[:, 0]
    lo = np.maximum(spans1[:, None, 0], spans2[None, :, 0])
    hi = np.minimum(spans1[:, None, 1], spans2[None, :, 1])
    inter = np.clip(hi - lo, 0, None)
    with np.errstate(divide="ignore", invalid="ignore"):
        return inter / (len1[:, None] + len2[None, :] - inter)


def qvh_iou_paired(spans1, spans2):
    """IoU of row i of spans1 with row i of spans2, the official R1 form: the "union" is the hull of
    the two spans (equal to the union when they overlap), 0 where it is empty."""
    inter = np.maximum(0, np.minimum(spans1[:, 1], spans2[:, 1]) - np.maximum(spans1[:, 0], spans2[:, 0]))
    hull = np.maximum(spans1[:, 1], spans2[:, 1]) - np.minimum(spans1[:, 0], spans2[:, 0])
    return np.divide(inter, hull, out=np.zeros_like(inter), where=hull != 0)


def qvh_interpolated_ap(precision, recall):
    """VOC-2011 interpolated AP: precision made non-increasing from the right (0 appended), summed
    over the points where recall moves (recall 0 prepended, 1 appended)."""
    prec = np.concatenate([[0.0], precision, [0.0]])
    rec = np.concatenate([[0.0], recall, [1.0]])
    for i in range(len(prec) - 2, -1, -1):
        prec[i] = max(prec[i], prec[i + 1])
    steps = np.nonzero(rec[1:] != rec[:-1])[0] + 1
    return np.sum((rec[steps] - rec[steps - 1]) * prec[steps])


def qvh_detection_ap(gt_windows, predictions, thresholds=QVH_IOU_THRESHOLDS):
    """AP per IoU threshold of one query: ``predictions`` [[s, e, score], ...] against ``gt_windows``
    [[s, e], ...]. By score, descending (a stable sort); each prediction takes the unmatched GT window of
    highest IoU >= the threshold (ties: last listed first), else it is a false positive."""
    ap = np.zeros(len(thresholds))
    if not predictions:
        return ap
    preds = sorted(predictions, key=lambda p: -p[2])
    gts = np.array(gt_windows, dtype=float).reshape(-1, 2)
    matched = np.full((len(thresholds), len(gts)), -1)
    tp = np.zeros((len(thresholds), len(preds)))
    fp = np.zeros((len(thresholds), len(preds)))
    for i, pred in enumerate(preds):
        ious = qvh_iou_cross(np.array([pred[:2]], dtype=float), gts)[0]
        by_iou = np.argsort(ious, kind="stable")[::-1]
        for t, threshold in enumerate(thresholds):
            for j in by_iou:
                if ious[j] < threshold:
                    break
                if matched[t, j] >= 0:
                    continue
                tp[t, i] = 1
                matched[t, j] = i
                break
            if tp[t, i] == 0:
                fp[t, i] = 1
    tp_sum = np.cumsum(tp, axis=1)
    fp_sum = np.cumsum(fp, axis=1)
    recall = tp_sum / float(len(gts))
    precision = tp_sum / (tp_sum + fp_sum)
    for t in range(len(thresholds)):
        ap[t] = qvh_interpolated_ap(precision[t], recall[t])
    return ap


def _qvh_detection_ap_job(job, thresholds):
    qid, gt_windows, predictions = job
    return qid, qvh_detection_ap(gt_windows, predictions, thresholds)


def _qvh_map(function, jobs, num_workers, chunksize=50):
    """``function`` over ``jobs``: in this process, or as the official ``Pool(n).imap_unordered``."""
    if num_workers > 1:
        with multiprocessing.Pool(num_workers) as pool:
            return list(pool.imap_unordered(function, jobs, chunksize=chunksize))
    return [function(job) for job in jobs]


def _qvh_percent(value):
    return float(f"{100 * value:.2f}")


def qvh_mr_map(submission, ground_truth, thresholds=QVH_IOU_THRESHOLDS, max_pred_windows=10, num_workers=1):
    """The official ``compute_mr_ap``: mAP (percent, 2 decimals) per threshold and their "average";
    the first ``max_pred_windows`` windows of each prediction row."""
    preds = defaultdict(list)
    for row in submission:
        for window in row["pred_relevant_windows"][:max_pred_windows]:
            preds[row["qid"]].append(list(window[:3]))
    gts = defaultdict(list)
    for row in ground_truth:
        gts[row["qid"]].extend(list(w[:2]) for w in row["relevant_windows"])
    jobs = [(qid, gts[qid], preds[qid]) for qid in preds]
    results = _qvh_map(functools.partial(_qvh_detection_ap_job, thresholds=thresholds), jobs, num_workers)
    ap_per_threshold = np.array([ap for _, ap in results]).mean(0)
    out = OrderedDict((str(t), ap) for t, ap in zip(thresholds, ap_per_threshold))
    out["average"] = np.mean(ap_per_threshold)
    return OrderedDict((k, _qvh_percent(v)) for k, v in out.items())


def qvh_mr_r1(submission, ground_truth, thresholds=QVH_IOU_THRESHOLDS):
    """The official ``compute_mr_r1``: the first listed window against the GT window it overlaps most
    (first on ties), hit when the (hull) IoU >= threshold; percent, 2 decimals."""
    first = {row["qid"]: row["pred_relevant_windows"][0][:2] for row in submission}
    chosen = {}
    for row in ground_truth:
        windows = row["relevant_windows"]
        ious = qvh_iou_cross(np.array([first[row["qid"]]], dtype=float), np.array(windows, dtype=float))[0]
        chosen[row["qid"]] = windows[int(np.argmax(ious))]
    qids = list(first)
    ious = qvh_iou_paired(np.array([first[q] for q in qids], dtype=float),
                          np.array([chosen[q] for q in qids], dtype=float))
    return OrderedDict((str(t), float(f"{np.mean(ious >= t) * 100:.2f}")) for t in thresholds)


def qvh_rows_in_range(submission, ground_truth, bounds):
    """The rows of a length range (lo, hi]: each GT row keeps its windows of that length, and is dropped
    with its prediction row when none is left; (0, 150) keeps everything as it is."""
    lo, hi = bounds
    if lo == 0 and hi == 150:
        return submission, ground_truth
    kept = []
    for row in ground_truth:
        windows = [w for w in row["relevant_windows"] if lo < w[1] - w[0] <= hi]
        if windows:
            row = copy.deepcopy(row)
            row["relevant_windows"] = windows
            kept.append(row)
    qids = {row["qid"] for row in kept}
    return [copy.deepcopy(row) for row in submission if row["qid"] in qids], kept


def qvh_moment_retrieval(submission, ground_truth, num_workers=1):
    """The official ``eval_moment_retrieval``: {range: {"MR-mAP": ..., "MR-R1": ...}} for short, middle,
    long and full. (The official crashes on an empty range; so does this.)"""
    out = {}
    for name, bounds in QVH_LENGTH_RANGES:
        sub, gt = qvh_rows_in_range(submission, ground_truth, bounds)
        out[name] = {"MR-mAP": qvh_mr_map(sub, gt, num_workers=num_workers), "MR-R1": qvh_mr_r1(sub, gt)}
    return out


def qvh_clip_scores(gt_row, clip_length=2):
    """int(duration / clip_length) x annotators scores of one GT row, 0 outside its relevant clips."""
    annotators = len(gt_row["saliency_scores"][0])
    scores = np.zeros((int(gt_row["duration"] / clip_length), annotators))
    scores[np.array(gt_row["relevant_clip_ids"])] = np.array(gt_row["saliency_scores"])
    return scores


def qvh_precision_recall_curve(y_true, y_score):
    """scikit-learn's ``precision_recall_curve`` (no weights, no dropped points), re-expressed: one
    point per distinct score, from the lowest threshold to the highest, then (precision 1, recall 0)."""
    y_true = np.asarray(y_true, dtype=float)
    y_score = np.asarray(y_score, dtype=float)
    order = np.argsort(y_score, kind="stable")[::-1]
    y_score, y_true = y_score[order], y_true[order]
    ends = np.concatenate([np.nonzero(np.diff(y_score))[0], [len(y_true) - 1]])
    tps = np.cumsum(y_true)[ends]
    fps = 1 + ends.astype(float) - tps
    precision = tps / (tps + fps)
    recall = tps / tps[-1]
    return np.concatenate([precision[::-1], [1.0]]), np.concatenate([recall[::-1], [0.0]])


def qvh_get_ap(y_true, y_score):
    """The official ``get_ap`` (interpolated, not 11-point): 0 when no clip is positive, 1 when all
    are, else the mean of the running-max precision at the points where the (float32) recall moves."""
    if len(set(y_true)) == 1:
        return 0 if y_true[0] == 0 else 1
    precision, recall = qvh_precision_recall_curve(y_true, y_score)
    recall = recall.astype(np.float32)
    for i in range(1, len(precision)):
        precision[i] = max(precision[i - 1], precision[i])
    return np.mean(precision[np.nonzero(np.diff(recall))])


def _qvh_saliency_ap_job(job):
    """AP of one (query, annotator): the prediction cut, or padded with 0, to the GT's length."""
    row, annotator, y_true, y_score = job
    if len(y_score) > len(y_true):
        y_score = y_score[:len(y_true)]
    elif len(y_score) < len(y_true):
        padded = np.zeros(len(y_true))
        padded[:len(y_score)] = y_score
        y_score = padded
    return row, annotator, qvh_get_ap(y_true, y_score)


def qvh_highlight(submission, ground_truth, num_workers=1):
    """The official ``eval_highlight``: {"HL-min-<level>": {"HL-mAP": ..., "HL-Hit1": ...}}."""
    preds = {row["qid"]: row["pred_saliency_scores"] for row in submission}
    clip_scores = {row["qid"]: qvh_clip_scores(row) for row in ground_truth}
    qids = list(preds)
    out = {}
    for name, level in QVH_SALIENCY_LEVELS:
        relevant = {qid: (scores >= level).astype(float) for qid, scores in clip_scores.items()}
        annotators = next(iter(relevant.values())).shape[1]
        hits = np.zeros((len(qids), annotators))
        for i, qid in enumerate(qids):
            top = np.argmax(preds[qid])
            if top < len(relevant[qid]):
                hits[i] = relevant[qid][top]
        jobs = [(i, a, relevant[qid][:, a], np.array(preds[qid]))
                for i, qid in enumerate(qids) for a in range(annotators)]
        ap = np.zeros((len(qids), annotators))
        for i, a, value in _qvh_map(_qvh_saliency_ap_job, jobs, num_workers):
            ap[i, a] = value
        out[f"HL-min-{name}"] = {"HL-mAP": _qvh_percent(np.mean(ap)),
                                 "HL-Hit1": _qvh_percent(np.mean(np.max(hits, 1)))}
    return out


def qvh_eval_submission(submission, ground_truth, num_workers=1):
    """The official ``eval_submission`` (qids already matched): "brief" then the blocks sorted by name.
    ``num_workers`` 8 is the official setting (a Pool per range and per saliency level)."""
    metrics, brief = {}, OrderedDict()
    if "pred_relevant_windows" in submission[0]:
        mr = qvh_moment_retrieval(submission, ground_truth, num_workers)
        metrics.update(mr)
        mr_brief = {"MR-full-mAP": mr["full"]["MR-mAP"]["average"],
                    "MR-full-mAP@0.5": mr["full"]["MR-mAP"]["0.5"],
                    "MR-full-mAP@0.75": mr["full"]["MR-mAP"]["0.75"],
                    "MR-short-mAP": mr["short"]["MR-mAP"]["average"],
                    "MR-middle-mAP": mr["middle"]["MR-mAP"]["average"],
                    "MR-long-mAP": mr["long"]["MR-mAP"]["average"],
                    "MR-full-R1@0.5": mr["full"]["MR-R1"]["0.5"],
                    "MR-full-R1@0.7": mr["full"]["MR-R1"]["0.7"]}
        brief.update(sorted(mr_brief.items()))
    if "pred_saliency_scores" in submission[0]:
        hl = qvh_highlight(submission, ground_truth, num_workers)
        metrics.update(hl)
        for block, values in hl.items():
            for key, value in values.items():
                brief[f"{block}-{key.split('-')[1]}"] = value
    out = OrderedDict(brief=brief)
    out.update(sorted(metrics.items()))
    return out
