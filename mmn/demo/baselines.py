"""Sentence-blind baselines for the recall table: a random moment and the dataset prior.

Both choose among the candidate cells of the moment map (the valid cells of the NUM_CLIPS x NUM_CLIPS
grid for FEAT2D.POOLING_COUNTS), cell (i, j) being the moment [i * d / N, (j + 1) * d / N] of a video
of duration d, exactly as the model's predictions. Both are scored with ``mmn.evaluation.recall_table``
(same keys as the model's table: R@1/R@5 at the dataset's IoU thresholds, and mIoU of the top-1 moment).
Everything is vectorised over queries; the only Python loops are over the k ranks.
"""
import torch

from ..data.catalog import dataset_entry
from ..evaluation import metric_spec, recall_table
from ..structures.moment_map import sparse_moment_cells
from ..structures import segment_iou


def candidate_cells(num_clips, pooling_counts):
    """(P, 2) long (i, j) of the valid cells of the moment map, in row-major order."""
    mask2d, _ = sparse_moment_cells(list(pooling_counts), num_clips)
    return mask2d.nonzero()


def normalised_cells(num_clips, pooling_counts):
    """(P, 2) float64 normalised moments [i / N, (j + 1) / N] of the valid cells, row-major."""
    cells = candidate_cells(num_clips, pooling_counts).to(torch.float64)
    cells[:, 1] += 1
    return cells / num_clips


def _to_seconds(normalised, durations):
    """normalised (Q, k, 2) or (k, 2) fractions x durations (Q,) -> (Q, k, 2) seconds, float32."""
    durations = torch.as_tensor(durations, dtype=torch.float64)
    if normalised.dim() == 2:
        normalised = normalised[None].expand(len(durations), -1, -1)
    return (normalised * durations[:, None, None]).to(torch.float32)


def random_moments(durations, num_clips, pooling_counts, k=5, seed=0):
    """(Q, k, 2) seconds: for every query, k DISTINCT candidate cells drawn uniformly at random (seeded).

    Rank 1 is a uniform random valid cell; ranks 1..k are a uniform random k-subset in random order.
    """
    cells = normalised_cells(num_clips, pooling_counts)
    q = len(durations)
    if k > len(cells):
        raise ValueError(f"k={k} exceeds the {len(cells)} candidate cells")
    generator = torch.Generator().manual_seed(seed)
    picks = torch.rand(q, len(cells), generator=generator).argsort(dim=1)[:, :k]  # Q x k distinct
    return _to_seconds(cells[picks], durations)


def cell_hits(gt_moments, durations, num_clips, pooling_counts, iou_threshold=0.5):
    """(Q, P) bool: candidate cell p reaches IoU >= iou_threshold with query q's ground truth.

    IoU is scale-invariant, so it is computed on normalised moments (ground truth / duration).
    """
    cells = normalised_cells(num_clips, pooling_counts)
    gt = gt_moments.to(torch.float64) / torch.as_tensor(durations, dtype=torch.float64)[:, None]
    return segment_iou(cells[None, :, :], gt[:, None, :]) >= iou_threshold


def prior_cells(train_moments, train_durations, num_clips, pooling_counts, k=5, iou_threshold=0.5):
    """Indices (k,) into ``candidate_cells``: the dataset prior, fitted on the TRAIN ground truth.

    Rank 1 is the single fixed normalised moment that maximises R@1 IoU@``iou_threshold`` over the train
    queries (the best fixed moment). Ranks 2..k are chosen greedily for R@k: each next cell is the one that
    hits (IoU >= threshold) the most train queries not hit by the cells already chosen (greedy maximum
    coverage, i.e. the best fixed moment among the queries still missed). Ties go to the first cell in
    row-major order. If every train query is covered early, the remaining ranks take the cells with the
    most hits overall among those not chosen yet.
    """
    hits = cell_hits(train_moments, train_durations, num_clips, pooling_counts, iou_threshold)  # Qtr x P
    total = hits.sum(dim=0)
    covered = torch.zeros(hits.shape[0], dtype=torch.bool)
    chosen = torch.zeros(hits.shape[1], dtype=torch.bool)
    picks = []
    for _ in range(min(k, hits.shape[1])):
        gain = (hits & ~covered[:, None]).sum(dim=0)
        # primary key: new hits; secondary: total hits; chosen cells are excluded
        key = (gain * (hits.shape[0] + 1) + total).masked_fill(chosen, -1)
        best = int(key.argmax())
        picks.append(best)
        chosen[best] = True
        covered |= hits[:, best]
    return torch.tensor(picks, dtype=torch.long)


def prior_moments(train_moments, train_durations, test_durations, num_clips, pooling_counts, k=5,
                  iou_threshold=0.5):
    """(Q_test, k, 2) seconds: the train prior's fixed normalised moments scaled by each test duration."""
    picks = prior_cells(train_moments, train_durations, num_clips, pooling_counts, k, iou_threshold)
    return _to_seconds(normalised_cells(num_clips, pooling_counts)[picks], test_durations)


def baseline_tables(train_moments, train_durations, test_moments, test_durations, num_clips, pooling_counts,
                    seed=0, k=5, iou_thresholds=(0.5, 0.7), recalls=None, strict=False):
    """Recall tables of both baselines on the test split: ``{"random": metrics, "prior": metrics}``.

    ``*_moments``: (Q, 2) seconds (float32, per query), ``*_durations``: (Q,) seconds (per query);
    ``num_clips``/``pooling_counts``: the candidate grid (N and the pooling counts of a sparse moment map).
    Thresholds default to Charades-STA's, recall ranks to R@1 and R@5. The prior is fitted separately
    at each IoU threshold (the best fixed moments for that threshold: the strongest prior); its mIoU
    is that of the fit at the lowest threshold.
    """
    thresholds = tuple(iou_thresholds)
    recalls = tuple(r for r in (recalls or (1, 5)) if r <= k)
    rand = random_moments(test_durations, num_clips, pooling_counts, k=k, seed=seed)
    prior = {}
    for i, threshold in enumerate(sorted(thresholds)):
        fixed = prior_moments(train_moments, train_durations, test_durations, num_clips, pooling_counts, k=k,
                              iou_threshold=threshold)
        table = recall_table(fixed, test_moments, thresholds, recalls=recalls, strict=strict)
        prior.update({key: v for key, v in table.items() if key.endswith(f"IoU@{threshold:.1f}")})
        if i == 0:
            prior["mIoU"] = table["mIoU"]
    prior = {key: prior[key] for key in table}  # the recall table's key order
    return {"random": recall_table(rand, test_moments, thresholds, recalls=recalls, strict=strict), "prior": prior}


def per_query(dataset):
    """(moments (Q, 2) float32 seconds, durations (Q,) float64 seconds) of a dataset, per query."""
    return dataset.query_moments(), dataset.query_durations()


def dataset_baseline_tables(cfg, train_dataset, test_dataset, num_clips, pooling_counts, seed=None, num_moments=None):
    """``baseline_tables`` for two datasets with the metrics the config's model reports (thresholds and
    ranks of ``metric_spec``, for a model that returns ``num_moments`` per query), on the candidate grid
    (``num_clips``, ``pooling_counts``); seed defaults to cfg.SEED."""
    thresholds, recalls, strict = metric_spec(cfg, dataset_entry(cfg, test_dataset), num_moments=num_moments)
    train_moments, train_durations = per_query(train_dataset)
    test_moments, test_durations = per_query(test_dataset)
    return baseline_tables(train_moments, train_durations, test_moments, test_durations,
                           num_clips, pooling_counts,
                           seed=cfg.SEED if seed is None else seed, iou_thresholds=thresholds, recalls=recalls,
                           strict=strict)
