"""Moment-DETR data against the batches recorded from the official code (shared/fixtures/mdetr_parity): every
row of tests/parity_tools/mdetr_data.py within tolerance; the checks fail when the data pipeline changes."""
import os

import numpy as np
import pytest

from helpers.paths import SHARED_DIR
from parity_tools.mdetr_data import data_parity_rows, format_rows

FIXTURE = os.path.join(SHARED_DIR, "fixtures", "mdetr_parity")
pytestmark = pytest.mark.skipif(not os.path.isfile(os.path.join(FIXTURE, "mdetr_expected.pt")),
                                reason="../shared/fixtures/mdetr_parity not present")


def test_every_recorded_batch_is_rebuilt():
    rows = data_parity_rows(FIXTURE)
    assert all(r.ok for r in rows), format_rows(rows)
    names = {r.quantity.split(" (")[0] for r in rows}
    for phase in ("eval_init", "train[drop]", "train[nodrop]"):
        for key in ("src_txt", "src_txt_mask", "src_vid", "src_vid_mask", "span_labels", "saliency_pos_labels",
                    "saliency_neg_labels"):
            assert f"{phase} {key}" in names
    assert "inference[drop] saliency_pos_labels" in names


def _argsort_reversing_ties(values, *args, **kwargs):
    """Increasing order, equal values in decreasing index order: other picks among ties than a stable sort."""
    values = np.asarray(values)
    return np.lexsort((-np.arange(len(values)), values))


def test_other_picks_inside_recorded_tie_sets_are_reported_not_failed(monkeypatch):
    import mmn.modeling.moment_detr.data as data

    monkeypatch.setattr(data.np, "argsort", _argsort_reversing_ties)
    rows = data_parity_rows(FIXTURE)
    assert all(r.ok for r in rows), format_rows(rows)
    assert any("tie, platform-dependent" in r.quantity for r in rows)


def test_normalising_the_concatenation_instead_of_each_folder_fails(monkeypatch):
    from mmn.data import readers

    original = readers.NpzVideoFolders.read_numpy

    def renormalised(self, vid, owner=None):
        return readers.l2_normalize_rows(original(self, vid, owner))

    monkeypatch.setattr(readers.NpzVideoFolders, "read_numpy", renormalised)
    rows = {r.quantity: r for r in data_parity_rows(FIXTURE)}
    assert not rows["eval_init src_vid"].ok and rows["eval_init src_txt"].ok


def test_drawing_the_easy_negative_before_the_easy_positive_fails(monkeypatch):
    import random

    import mmn.modeling.moment_detr.data as data

    def swapped(clip_ids, scores, ctx_l, max_n=1):
        order = np.argsort(np.sum(np.array(scores), 1))
        hard_pos = [min(clip_ids[k], ctx_l - 1) for k in order[-max_n:]]
        hard_neg = [min(clip_ids[k], ctx_l - 1) for k in order[:max_n]]
        pool = list(set(range(ctx_l)) - set(clip_ids))
        if len(pool) < max_n:
            return hard_pos * 2, hard_neg * 2
        easy_neg = random.sample(pool, k=max_n)
        return hard_pos + random.sample(clip_ids, k=max_n), hard_neg + easy_neg

    monkeypatch.setattr(data, "saliency_labels", swapped)
    rows = {r.quantity: r for r in data_parity_rows(FIXTURE)}
    assert not rows["train[drop] saliency_neg_labels"].ok and not rows["eval_init saliency_pos_labels"].ok
    assert rows["train[drop] src_vid"].ok and rows["eval_init span_labels"].ok
