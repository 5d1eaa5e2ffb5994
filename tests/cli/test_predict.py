"""Prediction API and CLI, result files, plots."""
import json
import os
import struct
import subprocess
import sys

import numpy as np
import pytest
import torch

from mmn.config import load_config
from mmn import engine
from mmn.predict import PredictionInputError, Predictor

from helpers.paths import PARITY_DIR as PARITY, REPO_ROOT as ROOT
CONFIG = os.path.join(PARITY, "config.yaml")
FEATURES = os.path.join(PARITY, "dataset", "Charades_STA", "vgg_rgb_features.hdf5")
CPU = torch.device("cpu")

pytest.importorskip("matplotlib")


def png_size(path):
    with open(path, "rb") as f:
        head = f.read(24)
    assert head[:8] == b"\x89PNG\r\n\x1a\n", path
    return struct.unpack(">II", head[16:24])


def opts(text_encoder, output_dir):
    return ["MODEL.DEVICE", "cpu", "MODEL.MMN.TEXT_ENCODER.PRETRAINED", text_encoder,
            "DATASETS.ROOT", os.path.join(PARITY, "dataset"), "OUTPUT_DIR", str(output_dir)]


@pytest.fixture(scope="module")
def trained(parity_text_encoder_dir, tmp_path_factory):
    """A checkpoint trained 2 epochs on the tiny fixture dataset, and test_net's results for it."""
    out = tmp_path_factory.mktemp("trained")
    cfg = load_config(CONFIG, opts(parity_text_encoder_dir, out))
    engine.train(cfg, CPU)
    ckpt = str(out / "model_2e.pth")
    engine.evaluate_checkpoint(cfg, CPU, ckpt, str(out / "results.json"), vis=2)
    return {"dir": out, "ckpt": ckpt, "opts": opts(parity_text_encoder_dir, out),
            "results": json.loads((out / "results.json").read_text())}


def test_api_matches_test_net(trained):
    predictor = Predictor.from_checkpoint(trained["ckpt"], CONFIG, trained["opts"])
    queries = trained["results"]["queries"]
    video = queries[0]["video"]
    same_video = [q for q in queries if q["video"] == video]
    features = predictor.load_features(FEATURES, video)
    predictions = predictor.predict(features.numpy(), same_video[0]["duration"], [q["sentence"] for q in same_video])
    assert len(predictions) == len(same_video)
    for pred, expected in zip(predictions, same_video):
        assert 1 <= len(pred.moments) <= 5
        scores = [m.score for m in pred.moments]
        assert scores == sorted(scores, reverse=True)
        assert all(0 <= m.start < m.end <= expected["duration"] + 1e-4 for m in pred.moments)
        got = np.array([[m.start, m.end, m.score] for m in pred.moments])
        want = np.array(expected["top5"])
        assert got.shape == want.shape
        np.testing.assert_allclose(got[:, :2], want[:, :2], atol=1e-3)
        np.testing.assert_allclose(got[:, 2], want[:, 2], rtol=1e-3, atol=1e-4)


@pytest.mark.slow
def test_cli_prints_and_writes_the_same(trained, tmp_path):
    queries = trained["results"]["queries"]
    q = queries[-1]
    out = tmp_path / "pred.json"
    proc = subprocess.run([sys.executable, "-m", "mmn.predict", "--config", CONFIG, "--ckpt", trained["ckpt"],
                           "--features", FEATURES, "--video-id", q["video"], "--duration", str(q["duration"]),
                           "--query", q["sentence"], "--topk", "5", "--json", str(out), *trained["opts"]],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert q["sentence"] in proc.stdout
    written = json.loads(out.read_text())["queries"][0]
    for m in written["moments"]:
        assert f"{m[0]:.2f}" in proc.stdout and f"{m[1]:.2f}" in proc.stdout
    np.testing.assert_allclose(np.array(written["moments"])[:, :2], np.array(q["top5"])[:, :2], atol=1e-3)


def installed_script():
    """The installed ``mmn-predict`` console script, when it runs this clone's code (pip install -e .)."""
    import shutil

    script = shutil.which("mmn-predict")
    if script is None:
        pytest.skip("mmn-predict is not installed (pip install -e .)")
    probe = subprocess.run([sys.executable, "-c", "import mmn, os; print(os.path.dirname(os.path.dirname(mmn.__file__)))"],
                           cwd="/", capture_output=True, text=True)
    if os.path.realpath(probe.stdout.strip()) != os.path.realpath(ROOT):
        pytest.skip(f"the installed mmn-predict runs {probe.stdout.strip()}, not this clone")
    return script


@pytest.mark.slow
def test_installed_console_script_exits_0_and_prints_only_the_table(trained, tmp_path):
    script = installed_script()
    q = trained["results"]["queries"][0]
    out = tmp_path / "pred.json"
    # no --config: the checkpoint carries it
    proc = subprocess.run([script, "--ckpt", trained["ckpt"], "--features", FEATURES, "--video-id", q["video"],
                           "--duration", str(q["duration"]), "--query", q["sentence"], "--json", str(out),
                           "MODEL.DEVICE", "cpu"],
                          cwd=str(tmp_path), capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, HF_HUB_DISABLE_PROGRESS_BARS="1", PYTHONWARNINGS="ignore"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.strip().splitlines()
    assert lines[0].startswith("+") and lines[-1].startswith("+") and all(l[0] in "+|" for l in lines)
    assert "Prediction(" not in proc.stdout + proc.stderr and "score_map" not in proc.stdout + proc.stderr
    assert json.loads(out.read_text())["queries"][0]["sentence"] == q["sentence"]
    # a bad input: one line, status 2
    proc = subprocess.run([script, "--ckpt", trained["ckpt"], "--features", str(tmp_path / "none.npy"),
                           "--duration", "3", "--query", "a person"], cwd=str(tmp_path), capture_output=True, text=True,
                          timeout=300, env=dict(os.environ, HF_HUB_DISABLE_PROGRESS_BARS="1", PYTHONWARNINGS="ignore"))
    assert proc.returncode == 2 and proc.stderr.strip().splitlines() == [
        f"mmn-predict: error: {tmp_path / 'none.npy'}: feature file not found"]


def test_npy_features_give_the_same_answer(trained, tmp_path):
    predictor = Predictor.from_checkpoint(trained["ckpt"], CONFIG, trained["opts"])
    q = trained["results"]["queries"][0]
    features = predictor.load_features(FEATURES, q["video"])
    np.save(tmp_path / "f.npy", features.numpy())
    a = predictor.predict(predictor.load_features(str(tmp_path / "f.npy")), q["duration"], q["sentence"])[0]
    b = predictor.predict(features, q["duration"], q["sentence"])[0]
    assert [(m.start, m.end) for m in a.moments] == [(m.start, m.end) for m in b.moments]


@pytest.mark.slow
@pytest.mark.parametrize("case", ["dim", "empty", "duration", "video"])
def test_bad_input_is_a_clear_error_and_writes_nothing(trained, tmp_path, case):
    q = trained["results"]["queries"][0]
    args = {"dim": ["--features", str(tmp_path / "bad.npy"), "--duration", "30", "--query", "a person"],
            "empty": ["--features", FEATURES, "--video-id", q["video"], "--duration", "30", "--query", "  "],
            "duration": ["--features", FEATURES, "--video-id", q["video"], "--duration", "0", "--query", "a person"],
            "video": ["--features", FEATURES, "--video-id", "NO_SUCH_VIDEO", "--duration", "30", "--query", "a person"]}
    message = {"dim": "dimension 65", "empty": "non-empty", "duration": "duration", "video": "NO_SUCH_VIDEO"}
    np.save(tmp_path / "bad.npy", np.zeros((10, 65), dtype=np.float32))
    out = tmp_path / "never.json"
    proc = subprocess.run([sys.executable, "-m", "mmn.predict", "--config", CONFIG, "--ckpt", trained["ckpt"],
                           *args[case], "--json", str(out), *trained["opts"]],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    assert message[case] in proc.stderr
    assert not out.exists()


def test_api_rejects_bad_input(trained):
    predictor = Predictor.from_checkpoint(trained["ckpt"], CONFIG, trained["opts"])
    good = np.random.rand(20, 64).astype(np.float32)
    with pytest.raises(PredictionInputError, match="dimension"):
        predictor.predict(np.random.rand(20, 63), 10.0, "a person")
    with pytest.raises(PredictionInputError, match="duration"):
        predictor.predict(good, -1.0, "a person")
    with pytest.raises(PredictionInputError, match="non-empty"):
        predictor.predict(good, 10.0, [])
    bad = good.copy()
    bad[3, 3] = np.nan
    with pytest.raises(PredictionInputError, match="NaN"):
        predictor.predict(bad, 10.0, "a person")


def test_plots_have_the_expected_size(trained, tmp_path):
    from mmn.visualization import plot_score_map, plot_timeline, plot_training_curves

    score = torch.rand(8, 8).triu()
    plot_score_map(score, 30.0, str(tmp_path / "map.png"), gt=(3.0, 12.0), top=[(0.0, 7.5, 0.9)], size=(5, 4), dpi=50)
    plot_timeline(30.0, str(tmp_path / "t.png"), gt=(3.0, 12.0), top=[(0.0, 7.5, 0.9), (5, 9, 0.5)], size=(6, 2), dpi=50)
    plot_training_curves(str(trained["dir"] / "metrics.jsonl"), str(tmp_path / "c.png"), size=(8, 3), dpi=50)
    assert png_size(tmp_path / "map.png") == (250, 200)
    assert png_size(tmp_path / "t.png") == (300, 100)
    assert png_size(tmp_path / "c.png") == (400, 150)


def test_training_and_test_net_write_plots(trained):
    assert png_size(trained["dir"] / "training_curves.png") == (900, 350)
    vis = sorted(os.listdir(trained["dir"] / "vis"))
    assert vis == ["query_00000_map.png", "query_00000_timeline.png", "query_00001_map.png",
                   "query_00001_timeline.png"]
    assert png_size(trained["dir"] / "vis" / "query_00000_map.png") == (500, 450)
    assert all(os.path.getsize(trained["dir"] / "vis" / f) > 1000 for f in vis)
