"""python -m mmn.demo --model tan runs end to end offline (shrunk: 24 videos, one epoch)."""
import os

import pytest

from mmn.demo.__main__ import main

pytestmark = pytest.mark.slow  # every test here runs the demo, a subprocess or torchrun


def test_tan_demo_runs_end_to_end(tmp_path, capsys):
    metrics, baselines = main(["--model", "tan", "--output-dir", str(tmp_path), "--train-videos", "24",
                               "--test-videos", "8", "SOLVER.MAX_EPOCH", "1", "SOLVER.TEST_PERIOD", "1",
                               "SOLVER.CHECKPOINT_PERIOD", "1", "SOLVER.BATCH_SIZE", "8"])
    out = capsys.readouterr().out
    assert "TAN (trained here)" in out and "best fixed moment (prior)" in out and "demo wall time" in out
    # the recall table's keys, and the test split's mean loss that the engine's evaluation records for 2D-TAN
    assert set(baselines["prior"]) == set(metrics) - {"loss"} == {"R@1,IoU@0.5", "R@1,IoU@0.7", "R@5,IoU@0.5",
                                                                  "R@5,IoU@0.7", "mIoU"}
    assert metrics["loss"] > 0
    assert os.path.isfile(tmp_path / "model_1e.pth") and os.path.isfile(tmp_path / "results_charades_test.json")
    assert os.path.isfile(tmp_path / "vis" / "query_00000_map.png")
