"""Moment-DETR: parity with the official jayleicn/moment_detr on the recorded fixture (README "Comparing").

The rows of tests/mdetr_parity_report.py, asserted: on the trimmed copy in tests/fixtures/mdetr_parity (fresh
clone) and on the full shared fixture (skips without ../shared). Sub-module outputs, outputs, matching indices
(exact), loss terms, step-1 gradients, grad norms, the AdamW updates, lr after StepLR, post-processing.
"""
import os

import pytest
import torch
import torch.nn.functional as F

from helpers.paths import SHARED_DIR, FIXTURES_DIR
from helpers.mdetr_parity import batch_for, build_model, compare_all, format_table, load_checkpoint, load_expected

LOCAL = os.path.join(FIXTURES_DIR, "mdetr_parity")
SHARED = os.path.join(SHARED_DIR, "fixtures", "mdetr_parity")
needs_shared = pytest.mark.skipif(not os.path.isfile(os.path.join(SHARED, "mdetr_expected.pt")),
                                  reason="../shared/fixtures/mdetr_parity not available")


def assert_rows(rows):
    failed = [r for r in rows if r.ok is False]
    assert not failed, "outside tolerance:\n" + format_table(failed)
    assert sum(r.ok is True for r in rows) > 250  # the table really compared something


def test_parity_trimmed_fixture():
    assert_rows(compare_all(LOCAL))


@needs_shared
def test_parity_shared_fixture():
    assert_rows(compare_all(SHARED))


@needs_shared
def test_dropout_draws_in_official_order_and_shapes(monkeypatch):
    """Recipe B needs the official call order: every training forward draws, in order, the recorded
    (module, p, shape) of the 24 official dropout calls."""
    expected, checkpoint = load_expected(SHARED), load_checkpoint(SHARED)
    run = next(r for r, v in expected["runs"].items() if v["train"]["steps"][0]["dropout"])
    step = expected["runs"][run]["train"]["steps"][0]
    model = build_model(expected["runs"][run]["train_opt"], checkpoint).train()
    calls, original = [], F.dropout

    def recording_dropout(x, p=0.5, training=True, inplace=False):
        if training and 0 < p < 1:
            calls.append((p, list(x.shape)))
        return original(x, p, training, inplace)

    monkeypatch.setattr(F, "dropout", recording_dropout)
    torch.set_rng_state(step["torch_rng_state"])
    model(batch_for(expected, run, 0))
    assert calls == [(d["p"], list(d["shape"])) for d in step["dropout"]]
