"""QD-DETR against the official code's recorded outputs (../shared/fixtures/qddetr_parity, see its README):
every row of tests/parity_tools/qddetr.py within its tolerance. Skipped without the shared fixture folder."""
import os

import pytest

from helpers.paths import SHARED_DIR
from parity_tools.qddetr import format_table, parity_rows

FIXTURE = os.path.join(SHARED_DIR, "fixtures", "qddetr_parity")

pytestmark = pytest.mark.skipif(not os.path.isfile(os.path.join(FIXTURE, "qddetr_expected.pt")),
                                reason="no ../shared/fixtures/qddetr_parity (the shared parity fixtures)")


@pytest.fixture(scope="module")
def rows():
    return parity_rows(FIXTURE)


def test_every_quantity_within_tolerance(rows):
    failed = [r for r in rows if not r.ok]
    assert not failed, "\n" + format_table(failed)


@pytest.mark.parametrize("needle", [
    "train[drop] src_vid", "eval_init forward pass pos decoder[1].bbox_embed", "eval_init forward pass neg hs", "eval_init matching last layer indices",
    "eval_init saliency rank_contrastive per threshold", "eval_init submission windows", "drop step 1 dropout masks",
    "drop step 1 gradients before clipping", "drop step 3 weights after the update", "nodrop step 2 grad norm",
    "drop lr after the epoch", "drop logged training means", "nodrop inference submission saliency scores",
    "train[drop] saliency_all_labels", "T2V mask entries mixing videos", "eval_init metrics",
    "nodrop inference metrics"])
def test_the_replay_covers(rows, needle):
    """The table has the rows of every recorded kind of quantity (a replay that silently skips a part fails)."""
    assert any(needle in r.name for r in rows), needle
