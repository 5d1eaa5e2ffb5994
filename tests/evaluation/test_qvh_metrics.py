"""QVHighlights metrics (mmn.evaluation.qvhighlights) against the official algorithm.

The reference is mmn/evaluation/reference.py's ``qvh_*`` (jayleicn/moment_detr standalone_eval, a loop
per query, scikit-learn's curve re-expressed): on generated rows with ties in scores and IoUs, many GT
windows, more than 10 predictions, short videos and saliency rows one clip off, the per-query figures
are equal bit for bit and the result dicts exactly; on the official sample predictions (../shared),
every number of sample_val_preds_metrics_raw.json is reproduced, key order and rounding included.
Self-contained (no conftest fixture); the shared data are found from the repository root.
"""
import json
import os

import numpy as np
import pytest
import torch

from mmn.evaluation import qvhighlights as qvh
from mmn.evaluation.reference import (QVH_IOU_THRESHOLDS, qvh_clip_scores, qvh_detection_ap, qvh_eval_submission,
                                      qvh_get_ap, qvh_iou_cross, qvh_mr_map, qvh_mr_r1, qvh_precision_recall_curve,
                                      qvh_rows_in_range)


def _repo_root():
    here = os.path.dirname(os.path.abspath(__file__))
    while not os.path.exists(os.path.join(here, "setup.py")) and os.path.dirname(here) != here:
        here = os.path.dirname(here)
    return here


SHARED = os.path.join(_repo_root(), "..", "shared")
FIXTURE = os.path.join(SHARED, "fixtures", "qvhighlights_eval")
VAL_GT = os.path.join(SHARED, "data", "qvhighlights", "highlight_val_release.jsonl")
HAVE_SHARED = os.path.exists(os.path.join(FIXTURE, "sample_val_preds.jsonl")) and os.path.exists(VAL_GT)
needs_shared = pytest.mark.skipif(not HAVE_SHARED, reason="../shared (QVHighlights fixture and val annotations) absent")


def _jsonl(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


# ------------------------------------------------------------------------------------------------
# generated rows of the official form
# ------------------------------------------------------------------------------------------------
def random_rows(seed, num_queries=240, durations=(150, 150, 150, 126, 20, 7, 3), max_gt=9, max_preds=14,
                annotators=3, window_lengths=None):
    """(submission, ground truth) rows with ties everywhere: windows on a 2-s grid (equal IoUs, repeated
    GT windows), scores and saliency from a few values, predictions beyond 10, saliency rows one clip
    short or long, rows with no / all clips relevant, videos of 1 to 75 clips."""
    rng = np.random.default_rng(seed)
    submission, ground_truth = [], []
    for qid in range(num_queries):
        duration = int(rng.choice(durations))
        clips = duration // 2
        windows = []
        for _ in range(int(rng.integers(1, max_gt + 1))):
            if windows and rng.random() < 0.15:
                windows.append(list(windows[int(rng.integers(len(windows)))]))  # a repeated window
                continue
            if window_lengths is not None:
                length = int(rng.choice(window_lengths))
                start = 2 * int(rng.integers(0, max(1, (duration - length) // 2 + 1)))
                windows.append([start, start + length])
                continue
            start = 2 * int(rng.integers(0, max(1, clips)))
            length = 2 * int(rng.integers(1, max(2, min(40, clips + 1))))
            windows.append([start, min(start + length, max(duration, start + 2))])
        relevant = sorted(rng.choice(max(clips, 1), size=int(rng.integers(1, max(clips, 1) + 1)), replace=False).tolist())
        kind = rng.random()
        if kind < 0.1:
            scores = [[4] * annotators for _ in relevant]  # every level: all relevant clips positive
        elif kind < 0.2:
            scores = [[int(rng.integers(0, 2)) for _ in range(annotators)] for _ in relevant]  # no positive
        else:
            scores = [[int(rng.integers(0, 5)) for _ in range(annotators)] for _ in relevant]
        ground_truth.append({"qid": qid, "query": f"q{qid}", "duration": duration, "vid": f"v{qid}",
                             "relevant_windows": windows, "relevant_clip_ids": relevant, "saliency_scores": scores})
        preds = []
        for _ in range(int(rng.integers(1, max_preds + 1))):
            if rng.random() < 0.4:
                s, e = windows[int(rng.integers(len(windows)))]
                s, e = s + 2 * int(rng.integers(-2, 3)), e + 2 * int(rng.integers(-2, 3))
                s, e = min(s, e), max(s, e)
            else:
                s = 2 * int(rng.integers(0, max(1, clips)))
                e = s + 2 * int(rng.integers(0, 20))
            preds.append([float(s), float(e), float(rng.choice([0.9, 0.5, 0.5, 0.25, 0.1, 0.0]))])
        num_scores = max(1, clips + int(rng.choice([-1, 0, 0, 0, 1])))
        saliency = [float(rng.choice([-1.0, 0.0, 0.5, 1.0, 2.0])) if rng.random() < 0.5 else float(rng.normal())
                    for _ in range(num_scores)]
        submission.append({"qid": qid, "query": f"q{qid}", "vid": f"v{qid}", "pred_relevant_windows": preds,
                           "pred_saliency_scores": saliency})
    return submission, ground_truth


def _dumps(metrics):
    return json.dumps(metrics, indent=4)


# ------------------------------------------------------------------------------------------------
# the whole result against the official algorithm
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_result_equals_the_official_algorithm(seed):
    submission, ground_truth = random_rows(seed)
    ours = qvh.eval_submission(submission, ground_truth)
    reference = qvh_eval_submission(submission, ground_truth)
    assert _dumps(ours) == _dumps(reference)  # every value, every key, their order
    assert list(ours["brief"]) == ["MR-full-R1@0.5", "MR-full-R1@0.7", "MR-full-mAP", "MR-full-mAP@0.5",
                                   "MR-full-mAP@0.75", "MR-long-mAP", "MR-middle-mAP", "MR-short-mAP",
                                   "HL-min-Fair-mAP", "HL-min-Fair-Hit1", "HL-min-Good-mAP", "HL-min-Good-Hit1",
                                   "HL-min-VeryGood-mAP", "HL-min-VeryGood-Hit1"]


def test_submission_order_is_kept():
    """Means over queries run in submission order, as officially: the GT order does not matter."""
    submission, ground_truth = random_rows(3, num_queries=60)
    shuffled = [ground_truth[i] for i in np.random.default_rng(0).permutation(len(ground_truth))]
    assert _dumps(qvh.eval_submission(submission, shuffled)) == _dumps(qvh_eval_submission(submission, ground_truth))


def test_one_kind_of_prediction_only():
    """A submission with windows only (or saliency only) gets those metrics only, as officially."""
    submission, ground_truth = random_rows(4, num_queries=50)
    windows_only = [{k: v for k, v in row.items() if k != "pred_saliency_scores"} for row in submission]
    saliency_only = [{k: v for k, v in row.items() if k != "pred_relevant_windows"} for row in submission]
    for rows in (windows_only, saliency_only):
        assert _dumps(qvh.eval_submission(rows, ground_truth)) == _dumps(qvh_eval_submission(rows, ground_truth))
    assert set(qvh.eval_submission(windows_only, ground_truth)) == {"brief", "full", "long", "middle", "short"}


# ------------------------------------------------------------------------------------------------
# per-query figures, bit for bit
# ------------------------------------------------------------------------------------------------
def _tensors(submission, ground_truth):
    from mmn.structures.qvh_records import validate_ground_truth, validate_submission

    ground_truth, truth = validate_ground_truth(ground_truth, "gt")
    submission, pred = validate_submission(submission, "submission", ground_truth)
    return qvh.columns_tensors(pred, truth)  # rows generated in the same qid order


def test_detection_ap_per_query_bit_for_bit():
    submission, ground_truth = random_rows(5, num_queries=300)
    moments = _tensors(submission, ground_truth)["moments"]
    ours = qvh.detection_average_precision(**moments).numpy()
    reference = np.stack([qvh_detection_ap(gt["relevant_windows"], [list(w) for w in row["pred_relevant_windows"][:10]])
                          for row, gt in zip(submission, ground_truth)])
    assert ours.dtype == reference.dtype == np.float64
    assert np.array_equal(ours, reference)
    assert 0 < ours.mean() < 1 and (ours == 1).any() and (ours == 0).any()


def test_saliency_ap_per_query_bit_for_bit():
    submission, ground_truth = random_rows(6, num_queries=300)
    sal = _tensors(submission, ground_truth)["saliency"]
    aligned = torch.where(sal["pred_mask"] & sal["clip_mask"], sal["pred_saliency"], torch.zeros(()))
    for level in (2, 3, 4):
        ours = qvh.saliency_average_precision(aligned, sal["gt_saliency"] >= level, sal["clip_mask"]).numpy()
        reference = []
        for row, gt in zip(submission, ground_truth):
            labels = (qvh_clip_scores(gt) >= level).astype(float)
            y_score = np.zeros(len(labels))
            pred = np.array(row["pred_saliency_scores"])[:len(labels)]
            y_score[:len(pred)] = pred
            reference.append([qvh_get_ap(labels[:, a], y_score) for a in range(labels.shape[1])])
        assert np.array_equal(ours, np.array(reference, dtype=np.float64)), level


def test_pairwise_sum_is_numpys_sum():
    rng = np.random.default_rng(0)
    for width in (1, 7, 8, 11, 75, 128, 129, 300):
        counts = rng.integers(0, width + 1, 64)
        values = rng.random((64, width)) * rng.choice([1e-3, 1.0, 1e6], size=(64, 1))
        values[np.arange(width) >= counts[:, None]] = 0
        ours = qvh.pairwise_sum(torch.from_numpy(values), torch.from_numpy(counts)).numpy()
        assert np.array_equal(ours, [np.sum(values[i, :counts[i]]) for i in range(64)]), width


def test_compact_keeps_order():
    values = torch.tensor([[1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 7.0, 8.0]])
    keep = torch.tensor([[False, True, False, True], [True, True, True, False]])
    out, counts = qvh.compact(values, keep, columns=5)
    assert out.tolist() == [[2.0, 4.0, 0, 0, 0], [5.0, 6.0, 7.0, 0, 0]] and counts.tolist() == [2, 3]


def test_temporal_iou_is_the_official_one():
    rng = np.random.default_rng(1)
    a = np.sort(rng.integers(0, 30, (1, 6, 2)) * 1.0, -1)
    b = np.sort(rng.integers(0, 30, (1, 9, 2)) * 1.0, -1)
    b[0, :, 1] += 1  # GT windows of positive length
    ours = qvh.temporal_iou(torch.from_numpy(a), torch.from_numpy(b))[0].numpy()
    assert np.array_equal(ours, qvh_iou_cross(a[0], b[0]))


# ------------------------------------------------------------------------------------------------
# documented choices and edge cases
# ------------------------------------------------------------------------------------------------
def _ap(pred, gt, thresholds):
    pred = torch.tensor([pred], dtype=torch.float64)
    gt = torch.tensor([gt], dtype=torch.float64)
    return qvh.detection_average_precision(pred[..., :2], pred[..., 2], gt, torch.ones(gt.shape[:2], dtype=torch.bool),
                                           iou_thresholds=thresholds)[0].tolist()


def test_equal_iou_takes_the_last_listed_gt_window():
    """The first prediction overlaps both GT windows by IoU 1/3; the second only [0, 10] (IoU 0.9). The
    official reversed argsort, read stably, gives the tie to the last listed window."""
    preds = [[5.0, 15.0, 0.9], [0.0, 9.0, 0.8]]
    assert _ap(preds, [[0, 10], [10, 20]], (0.3,)) == [1.0] == qvh_detection_ap([[0, 10], [10, 20]], preds, (0.3,)).tolist()
    assert _ap(preds, [[10, 20], [0, 10]], (0.3,)) == [0.5] == qvh_detection_ap([[10, 20], [0, 10]], preds, (0.3,)).tolist()


def test_equal_scores_keep_the_listed_order():
    """A miss listed before a hit of the same score ranks first (the official stable sort)."""
    assert _ap([[20.0, 30.0, 0.5], [0.0, 10.0, 0.5]], [[0, 10]], (0.5,)) == [0.5]
    assert _ap([[0.0, 10.0, 0.5], [20.0, 30.0, 0.5]], [[0, 10]], (0.5,)) == [1.0]


def test_only_the_first_ten_predictions_count_and_r1_takes_the_first_listed():
    gt = [[0, 10]]
    misses = [[50.0, 60.0, 0.9]] * 10
    assert _ap(misses + [[0.0, 10.0, 1.0]], gt, (0.5,)) == [0.0]  # an 11th prediction, best scored, is ignored
    # R1 reads the first listed window, not the best scored one
    pred = torch.tensor([[[50.0, 60.0], [0.0, 10.0]]], dtype=torch.float64)
    hits = qvh.top1_hits(pred, torch.tensor([gt], dtype=torch.float64), torch.ones(1, 1, dtype=torch.bool))
    assert not hits.any()


def test_hit1_counts_any_annotator():
    """The top clip is relevant (>= Good) for the third annotator only: a hit at Good, not at VeryGood."""
    pred = torch.tensor([[0.1, 0.9, 0.2]], dtype=torch.float64)
    gt = torch.tensor([[[4, 4, 4], [0, 1, 3], [0, 0, 0]]], dtype=torch.float64)
    metrics = qvh.highlight_metrics(pred, gt, torch.ones(1, 3, dtype=torch.bool))
    assert metrics["HL-min-Good"]["HL-Hit1"] == 100.0 and metrics["HL-min-VeryGood"]["HL-Hit1"] == 0.0


def test_hit1_top_clip_past_the_video_is_a_miss():
    """A prediction longer than the video: its top clip past the last clip misses (the official check)."""
    pred = torch.tensor([[0.1, 0.2, 0.9]], dtype=torch.float64)
    gt = torch.tensor([[[4, 4, 4], [4, 4, 4], [0, 0, 0]]], dtype=torch.float64)
    clip_mask = torch.tensor([[True, True, False]])
    metrics = qvh.highlight_metrics(pred, gt, clip_mask, pred_mask=torch.ones(1, 3, dtype=torch.bool))
    assert metrics["HL-min-Fair"]["HL-Hit1"] == 0.0
    assert metrics["HL-min-Fair"]["HL-mAP"] == 100.0  # both clips of the video relevant: AP 1 (official)


def test_empty_length_range_is_none_not_a_crash():
    """No GT window of 30 s or less: short and middle have no query. The official evaluator crashes;
    we report None there (JSON null) and the other ranges as officially."""
    submission, ground_truth = random_rows(7, num_queries=80, durations=(150,), window_lengths=(32, 40, 60))
    ours = qvh.eval_submission(submission, ground_truth)
    for name in ("short", "middle"):
        assert all(v is None for v in ours[name]["MR-mAP"].values()) and all(v is None for v in ours[name]["MR-R1"].values())
        assert ours["brief"][f"MR-{name}-mAP"] is None
    for name, bounds in (("long", (30, 150)), ("full", (0, 150))):
        sub, gt = qvh_rows_in_range(submission, ground_truth, bounds)
        assert dict(ours[name]["MR-mAP"]) == qvh_mr_map(sub, gt)
        assert dict(ours[name]["MR-R1"]) == qvh_mr_r1(sub, gt)
    assert json.loads(_dumps(ours))["short"]["MR-R1"]["0.5"] is None


def test_video_without_clips_scores_zero():
    """A video shorter than one clip (the official evaluator crashes on it): saliency AP 0, HIT@1 0."""
    metrics = qvh.highlight_metrics(torch.tensor([[0.5]], dtype=torch.float64), torch.zeros(1, 1, 3, dtype=torch.float64),
                                    torch.zeros(1, 1, dtype=torch.bool), pred_mask=torch.ones(1, 1, dtype=torch.bool))
    assert metrics["HL-min-Fair"] == {"HL-mAP": 0.0, "HL-Hit1": 0.0}


def test_any_dataset_ranked_moments_with_padding():
    """Charades-style use: one GT window per query, ranked moments of a model padded with NaN / -inf
    (the engine's top_moments), one range "full": the official algorithm on the present moments."""
    rng = np.random.default_rng(8)
    q, k = 120, 5
    gt = np.sort(rng.integers(0, 30, (q, 1, 2)), -1).astype(float)
    gt[..., 1] += 1
    windows = np.sort(rng.integers(0, 32, (q, k, 2)), -1).astype(float)
    scores = np.sort(rng.choice([0.9, 0.7, 0.7, 0.3], (q, k)), -1)[:, ::-1].copy()
    present = np.arange(k) < rng.integers(1, k + 1, (q, 1))
    windows[~present] = np.nan
    scores[~present] = -np.inf
    ours = qvh.moment_retrieval_metrics(torch.from_numpy(windows), torch.from_numpy(scores), torch.from_numpy(gt),
                                        torch.ones(q, 1, dtype=torch.bool), pred_mask=torch.from_numpy(present),
                                        length_ranges={"full": None})
    sub = [{"qid": i, "pred_relevant_windows": [list(windows[i, j]) + [scores[i, j]] for j in range(k) if present[i, j]]}
           for i in range(q)]
    truth = [{"qid": i, "relevant_windows": gt[i].tolist()} for i in range(q)]
    assert list(ours) == ["full"]
    assert qvh.round_metrics(ours["full"]["MR-mAP"]) == qvh_mr_map(sub, truth)
    assert qvh.round_metrics(ours["full"]["MR-R1"]) == qvh_mr_r1(sub, truth)
    brief = qvh.official_metrics(ours)["brief"]
    assert list(brief) == ["MR-full-R1@0.5", "MR-full-R1@0.7", "MR-full-mAP", "MR-full-mAP@0.5", "MR-full-mAP@0.75"]


def test_reference_curve_is_scikit_learns():
    """The reference's re-expression of precision_recall_curve against scikit-learn itself, ties included."""
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(9)
    for _ in range(200):
        n = int(rng.integers(2, 40))
        y_true = (rng.random(n) < rng.random()).astype(float)
        if len(set(y_true)) == 1:
            y_true[0] = 1 - y_true[0]
        y_score = rng.choice([0.0, 0.5, 1.0, rng.normal()], n) if rng.random() < 0.5 else rng.normal(size=n)
        precision, recall, _ = metrics.precision_recall_curve(y_true, y_score)
        ours_precision, ours_recall = qvh_precision_recall_curve(y_true, y_score)
        assert np.array_equal(precision, ours_precision) and np.array_equal(recall, ours_recall)


# ------------------------------------------------------------------------------------------------
# the official output on the official sample predictions
# ------------------------------------------------------------------------------------------------
@needs_shared
def test_official_sample_predictions_reproduced_exactly():
    submission = _jsonl(os.path.join(FIXTURE, "sample_val_preds.jsonl"))
    ground_truth = _jsonl(VAL_GT)
    with open(os.path.join(FIXTURE, "sample_val_preds_metrics_raw.json")) as f:
        expected = f.read()
    assert _dumps(qvh.eval_submission(submission, ground_truth)) == expected  # byte for byte


@needs_shared
def test_reference_reproduces_the_official_file():
    """The reference itself (what the generated-data tests trust) gives the official file."""
    submission = _jsonl(os.path.join(FIXTURE, "sample_val_preds.jsonl"))
    with open(os.path.join(FIXTURE, "sample_val_preds_metrics_raw.json")) as f:
        expected = f.read()
    assert _dumps(qvh_eval_submission(submission, _jsonl(VAL_GT))) == expected


def test_iou_thresholds_are_the_official_keys():
    assert [qvh.threshold_key(t) for t in QVH_IOU_THRESHOLDS] == \
        ["0.5", "0.55", "0.6", "0.65", "0.7", "0.75", "0.8", "0.85", "0.9", "0.95"]


def test_benchmark_generated_rows_score_as_officially():
    """The benchmark's rows where ../shared is absent: valid, and scored as the official algorithm does."""
    from benchmarks.qvh_eval import generate_rows

    submission, ground_truth = generate_rows(120, seed=1)
    assert _dumps(qvh.eval_submission(submission, ground_truth)) == _dumps(qvh_eval_submission(submission, ground_truth))
