"""From video files to moments, end to end: mmn-extract -> training through mmn.engine with a
dataset catalog -> mmn-predict --video, all offline on things the test makes.

Videos written with PyAV; a tiny random CLIP vision tower with a 512-d projection (the size of ViT-B/32's,
so configs/pool_clip_b32_fps05.yaml is used with its FEATPOOL.INPUT_SIZE); a tiny random BERT with a
tokenizer saved from a small vocabulary file (tests/helpers/video_model.py). The model is shrunk by
overrides, not the feature side.
"""
import json
import logging
import os
import subprocess
import sys

import h5py
import numpy as np
import pytest
import torch

pytest.importorskip("av")

from mmn.config import load_config  # noqa: E402
from mmn import engine  # noqa: E402
from mmn.predict import PredictionInputError, Predictor  # noqa: E402
from mmn.video.synthetic import constant_rate_times, save_random_clip, variable_rate_times, write_video  # noqa: E402

from helpers.video_model import CONFIG, FPS, ROOT, SENTENCES, save_tiny_bert, tiny_model_opts  # noqa: E402

CPU = torch.device("cpu")
torch.set_num_threads(1)
ENV = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false",
           HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")


pytestmark = pytest.mark.slow  # every test here runs the demo, a subprocess or torchrun


def run(module, *args, timeout=600):
    return subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, env=ENV, capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    """Extract (CLI) -> fill the annotation skeleton -> catalog -> train 1 epoch (engine.train)."""
    root = tmp_path_factory.mktemp("own_videos")
    videos = root / "videos"
    videos.mkdir()
    for k in range(5):
        duration = 6.0 + k
        times = variable_rate_times(duration, seed=k) if k == 4 else constant_rate_times(duration, 10)
        write_video(str(videos / f"clip{k}.mp4"), times, rate=10 if k < 4 else 25)
    clip = save_random_clip(str(root / "clip"), "tiny", projection_dim=512)
    bert = save_tiny_bert(str(root / "bert"))

    # 1. extract, with an annotation skeleton to fill in
    (root / "ann").mkdir()
    proc = run("mmn.video", str(videos), "--out", str(root / "feats.hdf5"), "--encoder", clip, "--fps", str(FPS),
               "--device", "cpu", "--no-progress", "--annotation-skeleton", str(root / "ann" / "all.json"))
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    skeleton = json.loads((root / "ann" / "all.json").read_text())
    for k, (vid, entry) in enumerate(sorted(skeleton.items())):  # what a user does by hand
        d = entry["duration"]
        entry["timestamps"] = [[0.0, d / 2], [d / 3, d]]
        entry["sentences"] = [SENTENCES[k], SENTENCES[(k + 2) % 5]]
    train = {vid: skeleton[vid] for vid in ("clip0", "clip1", "clip2", "clip3")}
    (root / "ann" / "train.json").write_text(json.dumps(train))
    (root / "ann" / "test.json").write_text(json.dumps({"clip4": skeleton["clip4"]}))
    (root / "catalog.yaml").write_text(
        "mydata_train: {format: charades, ann_file: ann/train.json, feat_file: feats.hdf5}\n"
        "mydata_test: {format: charades, ann_file: ann/test.json, feat_file: feats.hdf5}\n")

    # 2. train through the engine, on the shipped config with a smaller model
    out = root / "run"
    opts = tiny_model_opts(clip, bert, out, root / "catalog.yaml")
    cfg = load_config(CONFIG, [str(v) for v in opts])
    assert cfg.MODEL.MMN.FEATPOOL.INPUT_SIZE == 512 and cfg.INPUT.VIDEO.ENCODER == clip
    engine.train(cfg, CPU)
    return {"root": root, "videos": videos, "clip": clip, "ckpt": str(out / "model_1e.pth"), "opts": opts,
            "durations": json.loads((root / "feats.durations.json").read_text())}


def test_mmn_predict_video_runs_end_to_end_from_the_checkpoint_alone(pipeline, tmp_path):
    out = tmp_path / "moments.json"
    video = str(pipeline["videos"] / "clip4.mp4")
    proc = run("mmn.predict", "--ckpt", pipeline["ckpt"], "--video", video, "--query", SENTENCES[4],
               "--query", SENTENCES[1], "--topk", "3", "--json", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert SENTENCES[4] in proc.stdout and "clip4.mp4" in proc.stdout
    written = json.loads(out.read_text())
    duration = pipeline["durations"]["clip4"]
    assert written["video"] == video and written["duration"] == pytest.approx(duration, abs=1e-6)
    assert [q["sentence"] for q in written["queries"]] == [SENTENCES[4], SENTENCES[1]]
    for q in written["queries"]:
        assert 1 <= len(q["moments"]) <= 3
        assert all(0 <= s < e <= duration + 1e-4 for s, e, _ in q["moments"])


def test_predict_video_sees_the_features_training_saw(pipeline):
    """Prediction on the video file = prediction on its training features (same extractor, same rows)."""
    predictor = Predictor.from_checkpoint(pipeline["ckpt"], device="cpu")
    features, duration = predictor.video_features(str(pipeline["videos"] / "clip2.mp4"))
    with h5py.File(pipeline["root"] / "feats.hdf5", "r") as f:
        trained_on = f["clip2"][()]
    assert np.abs(features.numpy() - trained_on).max() <= 1e-5
    assert duration == pytest.approx(pipeline["durations"]["clip2"], abs=1e-9)
    from_video = predictor.predict_video(str(pipeline["videos"] / "clip2.mp4"), SENTENCES[:2], topk=5)
    from_file = predictor.predict(trained_on, pipeline["durations"]["clip2"], SENTENCES[:2], topk=5)
    for a, b in zip(from_video, from_file):
        assert [(m.start, m.end) for m in a.moments] == pytest.approx([(m.start, m.end) for m in b.moments], abs=1e-4)


def test_a_checkpoint_without_a_video_extractor_says_so(pipeline):
    predictor = Predictor.from_checkpoint(pipeline["ckpt"], opts=["INPUT.VIDEO.ENCODER", ""], device="cpu")
    with pytest.raises(PredictionInputError, match="INPUT.VIDEO.ENCODER is empty"):
        predictor.predict_video(str(pipeline["videos"] / "clip0.mp4"), SENTENCES[:1])


def test_an_extractor_of_another_feature_size_is_refused(pipeline, tmp_path):
    other = save_random_clip(str(tmp_path / "clip16"), "tiny")  # 16-d features
    predictor = Predictor.from_checkpoint(pipeline["ckpt"], device="cpu")
    with pytest.raises(PredictionInputError, match="16-d features but the checkpoint's model expects 512"):
        predictor.predict_video(str(pipeline["videos"] / "clip0.mp4"), SENTENCES[:1], encoder=other)


def test_training_refuses_an_fps_other_than_the_features_and_warns_on_the_encoder(pipeline, caplog, monkeypatch):
    from mmn.config.loading import ConfigError
    from mmn.modeling import build_dataset

    # setup_logger (run by earlier tests) stops the "mmn" logger's propagation: listen on it directly
    monkeypatch.setattr(logging.getLogger("mmn"), "propagate", True)
    opts = [str(v) for v in pipeline["opts"]]
    at = opts.index("INPUT.VIDEO.FPS")
    wrong_fps = load_config(CONFIG, opts[:at + 1] + ["0.5"] + opts[at + 2:])
    with pytest.raises(ConfigError, match=r"feats.hdf5: features extracted by mmn-extract at fps 2, but "
                                          r"INPUT.VIDEO.FPS is 0.5: set INPUT.VIDEO.FPS 2"):
        build_dataset(wrong_fps, "mydata_train", is_train=True)
    at = opts.index("INPUT.VIDEO.ENCODER")
    no_encoder = load_config(CONFIG, opts[:at + 1] + [""] + opts[at + 2:])
    with caplog.at_level("WARNING", logger="mmn"):
        build_dataset(no_encoder, "mydata_train", is_train=True)
    assert "INPUT.VIDEO.ENCODER is empty: this run's checkpoints cannot predict on video files" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="mmn"):
        build_dataset(load_config(CONFIG, opts), "mydata_train", is_train=True)  # the matching extractor
    assert "INPUT.VIDEO" not in caplog.text


def test_mmn_predict_video_input_errors(pipeline, tmp_path):
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"\x00" * 100)
    proc = run("mmn.predict", "--ckpt", pipeline["ckpt"], "--video", str(bad), "--query", SENTENCES[0])
    assert proc.returncode == 2 and "broken.mp4" in proc.stderr
    video = str(pipeline["videos"] / "clip0.mp4")
    proc = run("mmn.predict", "--ckpt", pipeline["ckpt"], "--video", video, "--duration", "3", "--query", SENTENCES[0])
    assert proc.returncode == 2 and "--video reads the duration from the stream" in proc.stderr
    proc = run("mmn.predict", "--ckpt", pipeline["ckpt"], "--video", video, "--features", "x.npy", "--query", "q")
    assert proc.returncode == 2 and "not allowed with argument" in proc.stderr


@pytest.mark.parametrize("name", ["pool_clip_b32_fps05.yaml", "pool_clip_b32_fps05_long.yaml"])
def test_the_clip_configs_load_with_a_catalog_and_record_the_extractor(tmp_path, name):
    (tmp_path / "catalog.yaml").write_text(
        "mydata_train: {format: charades, ann_file: train.json, feat_file: feats.hdf5}\n"
        "mydata_test: {format: charades, ann_file: test.json, feat_file: feats.hdf5}\n")
    cfg = load_config(os.path.join(ROOT, "configs", name), ["DATASETS.CATALOG_FILE", str(tmp_path / "catalog.yaml")])
    assert cfg.MODEL.MMN.FEATPOOL.INPUT_SIZE == 512  # ViT-B/32's projection
    assert (cfg.INPUT.VIDEO.ENCODER, cfg.INPUT.VIDEO.FPS) == ("openai/clip-vit-base-patch32", 0.5)
    mmn = cfg.MODEL.MMN
    assert cfg.INPUT.NUM_PRE_CLIPS == mmn.NUM_CLIPS * mmn.FEATPOOL.KERNEL_SIZE  # stride = kernel, as commented
    assert cfg.DATASETS.NAME == "mydata"
