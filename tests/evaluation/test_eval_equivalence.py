"""The batched evaluation returns exactly what the official per-query algorithm returns.

``mmn.evaluation.score_map_top_moments`` / ``evaluate_predictions`` replace the official Python NMS loop by k
vectorised rounds over all queries. Here the official algorithm, written plainly in
``mmn.evaluation.reference`` (per query: the non-zero cells as moments in seconds, sorted by score
descending, greedy NMS suppressing IoU > thresh, R@n,IoU@m = a hit among the first n kept), and the
batched one are run on the same random score maps: several map
sizes, NMS thresholds 0.4 / 0.5, maps with many zero cells, tied scores, and queries where fewer than
5 moments survive NMS or none at all (the official code crashes on those; a missing moment is a miss).
"""
import itertools
import math

import pytest
import torch

from mmn.data.catalog import builtin_entries
from mmn.evaluation import recall_table
from mmn.evaluation import score_map_top_moments
from mmn.modeling.mmn.ranking import evaluate_predictions, fuse_scores
from mmn.evaluation.reference import greedy_nms, mean_top1_iou, official_avgfeats, official_iou2d, recall_hits

RECALLS = (1, 5)


# ------------------------------------------------------------------------------------------------
# random score maps
# ------------------------------------------------------------------------------------------------
def upper_mask(n):
    return torch.ones(n, n).triu().bool()


def random_case(n, q, kind, gen):
    """(fused score maps Q x N x N, durations Q, gt moments Q x 2) of one kind of random case."""
    durations = (torch.rand(q, generator=gen, dtype=torch.float64) * 150 + 5).tolist()
    mask = upper_mask(n)
    if kind == "dense":
        scores = torch.rand(q, n, n, generator=gen) * mask
    elif kind == "sparse":  # many zero cells, a random subset of the upper triangle per query
        scores = torch.rand(q, n, n, generator=gen) * mask * (torch.rand(q, n, n, generator=gen) < 0.2)
    elif kind == "ties":  # few distinct values: many exact ties in score order
        scores = torch.randint(1, 4, (q, n, n), generator=gen).float() / 4 * mask
    elif kind == "few":  # at most 4 candidates, often overlapping: fewer than 5 survive NMS
        scores = torch.zeros(q, n, n)
        for row in range(q):
            count = int(torch.randint(0, 5, (1,), generator=gen))  # 0 .. 4 candidates, 0 = none at all
            i = torch.randint(0, n, (count,), generator=gen)
            j = torch.maximum(i, torch.randint(0, n, (count,), generator=gen))
            scores[row, i, j] = torch.rand(count, generator=gen) + 0.1
    elif kind == "nested":  # long moments (IoU > 0.5 with each other) and a few short ones: NMS keeps few
        i, j = torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij")
        long = (j + 1 - i) >= 0.8 * n
        scores = torch.rand(q, n, n, generator=gen) * mask * (long | (torch.rand(q, n, n, generator=gen) < 0.02))
    else:
        raise ValueError(kind)
    starts = torch.rand(q, generator=gen, dtype=torch.float64)
    ends = starts + torch.rand(q, generator=gen, dtype=torch.float64) * (1 - starts)
    d = torch.tensor(durations, dtype=torch.float64)
    gt = torch.stack([starts * d, ends * d], dim=1).float()
    return scores, durations, gt


CASES = [(n, kind) for n in (5, 16, 33) for kind in ("dense", "sparse", "ties", "few", "nested")] + [
    (64, "sparse"), (64, "ties"), (64, "few")]


@pytest.mark.parametrize("nms_thresh", [0.4, 0.5])
@pytest.mark.parametrize("n,kind", CASES)
def test_top_moments_match_plain_official(n, kind, nms_thresh):
    gen = torch.Generator().manual_seed(1000 * n + len(kind) + int(nms_thresh * 10))
    q = 40 if n < 64 else 12
    scores, durations, gt = random_case(n, q, kind, gen)
    top, top_scores = score_map_top_moments(scores, torch.tensor(durations, dtype=torch.float64), nms_thresh, k=5,
                                  chunk=7)  # small chunks: the chunked path is exercised too
    assert top.shape == (q, 5, 2) and top_scores.shape == (q, 5)
    # the shortest candidate prefix: most queries need the retries with 4x more candidates
    short_top, short_scores = score_map_top_moments(scores, torch.tensor(durations, dtype=torch.float64), nms_thresh, k=5,
                                          prefix=5)
    assert torch.equal(short_top.nan_to_num(-1), top.nan_to_num(-1)) and torch.equal(short_scores, top_scores)
    saw_short = False
    for row in range(q):
        ref_moments, ref_scores = greedy_nms(scores[row], durations[row], nms_thresh, k=5)
        m = len(ref_moments)
        saw_short |= m < 5
        assert torch.equal(top[row, :m], ref_moments), (row, top[row], ref_moments)
        assert torch.equal(top_scores[row, :m], ref_scores)
        assert torch.isnan(top[row, m:]).all() and torch.isneginf(top_scores[row, m:]).all()
    if kind in ("few", "nested"):
        assert saw_short  # the case really has queries with fewer than 5 survivors


IOU_THRESHOLDS = {e.dataset: e.iou_thresholds for e in builtin_entries("").values()}  # the catalog's


@pytest.mark.parametrize("dataset", sorted(IOU_THRESHOLDS))
@pytest.mark.parametrize("kind", ["dense", "sparse", "ties", "few"])
def test_recalls_match_plain_official(dataset, kind):
    gen = torch.Generator().manual_seed(hash((dataset, kind)) % 2 ** 31)
    n, q = 16, 60
    scores, durations, gt = random_case(n, q, kind, gen)
    # make some ground truths coincide with a candidate, so that IoU thresholds are met exactly
    gt[::3, 0] = torch.tensor([durations[r] * 2 / n for r in range(0, q, 3)]).float()
    gt[::3, 1] = torch.tensor([durations[r] * 6 / n for r in range(0, q, 3)]).float()
    thresholds = IOU_THRESHOLDS[dataset]
    top, _ = score_map_top_moments(scores, torch.tensor(durations, dtype=torch.float64), 0.5, k=5)
    metrics = recall_table(top, gt, thresholds)
    kept = [greedy_nms(scores[r], durations[r], 0.5, k=5)[0] for r in range(q)]
    hits, miou = recall_hits(kept, gt, thresholds, RECALLS), mean_top1_iou(kept, gt)
    for (i, r), (j, thr) in itertools.product(enumerate(RECALLS), enumerate(thresholds)):
        count = int(hits[i, j])
        value = metrics[f"R@{r},IoU@{thr:.1f}"]
        assert round(value * q) == count and math.isclose(value, count / q, rel_tol=0, abs_tol=1e-6)
    assert math.isclose(metrics["mIoU"], miou, rel_tol=0, abs_tol=1e-6)


@pytest.mark.parametrize("n,nms_thresh,pow_", [(16, 0.5, 0.5), (24, 0.4, 0.3)])
def test_evaluate_predictions_fuses_like_the_official(n, nms_thresh, pow_):
    """Fusion + NMS + recall from the two raw score maps, with mask2d-shaped zeros, as the official evaluate()."""
    gen = torch.Generator().manual_seed(7 + n)
    q = 50
    mask = upper_mask(n) & (torch.rand(n, n, generator=gen) < 0.6)  # a sparse valid-cell mask
    mask[range(n), range(n)] = True
    contrastive = (torch.rand(q, n, n, generator=gen) * 2 - 1) * mask
    iou = torch.rand(q, n, n, generator=gen) * mask
    iou[: q // 5] = (iou[: q // 5] * 4).round() / 4  # ties and extra zero cells in some queries
    durations = (torch.rand(q, generator=gen, dtype=torch.float64) * 100 + 10)
    gt = torch.stack([durations * 0.1, durations * 0.6], dim=1).float()
    metrics, top, scores = evaluate_predictions(contrastive, iou, durations, gt, IOU_THRESHOLDS["tacos"], nms_thresh, pow_)
    fused = torch.pow(contrastive * 0.5 + 0.5, pow_) * iou  # the official fusion, written out
    assert torch.equal(fuse_scores(contrastive, iou, pow_), fused)
    kept = []
    for row in range(q):
        ref_moments, ref_scores = greedy_nms(fused[row], durations[row].item(), nms_thresh, k=5)
        m = len(ref_moments)
        assert torch.equal(top[row, :m], ref_moments) and torch.equal(scores[row, :m], ref_scores)
        assert torch.isnan(top[row, m:]).all()
        kept.append(ref_moments)
    thresholds = IOU_THRESHOLDS["tacos"]
    hits, miou = recall_hits(kept, gt, thresholds, RECALLS), mean_top1_iou(kept, gt)
    for (i, r), (j, thr) in itertools.product(enumerate(RECALLS), enumerate(thresholds)):
        assert round(metrics[f"R@{r},IoU@{thr:.1f}"] * q) == int(hits[i, j])
    assert math.isclose(metrics["mIoU"], miou, rel_tol=0, abs_tol=1e-6)


# ------------------------------------------------------------------------------------------------
# the data-side rewrites made for the benchmark targets return the same values
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("num_segments", [8, 32, 256])
def test_resample_clips_is_the_official_avgfeats_bit_for_bit(num_segments):
    from mmn.data.features import resample_clips

    gen = torch.Generator().manual_seed(num_segments)
    for n in (1, 2, 5, 31, 32, 33, 120, 255, 257, 411, 1900):  # fewer clips than segments: empty bins
        feats = torch.nn.functional.normalize(torch.randn(n, 48, generator=gen), dim=1)
        assert torch.equal(resample_clips(feats, num_segments), official_avgfeats(feats, num_segments)), n


@pytest.mark.parametrize("n", [8, 16, 64, 128])
def test_cell_iou_targets_match_the_official_grid_arithmetic(n):
    from mmn.structures.moment_map import sparse_moment_cells
    from mmn.structures import cell_iou_targets

    gen = torch.Generator().manual_seed(n)
    s = 200 if n < 128 else 40
    d = torch.rand(s, generator=gen, dtype=torch.float64) * 300 + 1
    start = torch.rand(s, generator=gen, dtype=torch.float64) * d
    moments = torch.stack([start, start + torch.rand(s, generator=gen, dtype=torch.float64) * (d - start)], 1).float()
    moments[::4, 0] = 0  # bounds on the grid and the video's ends
    moments[::5, 1] = d[::5].float()
    moments[::7] = (torch.tensor([2.0, 5.0]) * d[::7, None] / n).float()
    # the official moment_to_iou2d, N x N per sentence
    official = torch.stack([official_iou2d(moment, duration, n) for moment, duration in zip(moments, d.tolist())])
    mask2d, _ = sparse_moment_cells([n // 2, 2] if n >= 8 else [n - 1], n)
    rows, cols = mask2d.nonzero(as_tuple=True)
    assert torch.equal(cell_iou_targets(moments, d, rows, cols, n), official[:, mask2d])
