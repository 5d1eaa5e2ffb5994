"""Runs never lose or mix work: a reused OUTPUT_DIR is refused, a trained epoch survives a failing
evaluation, bad data and names stop before the first training step, --resume parses anywhere."""
import json
import os
import shutil

import h5py
import numpy as np
import pytest
import torch

from mmn.config import load_config
from mmn.config.loading import ConfigError
from mmn.data import FeatureError
from mmn import engine
from mmn.modeling import build_model
from mmn.engine import argument_parser, parse_args
from mmn.utils.checkpoint import load_model_weights

from helpers.paths import PARITY_DIR as PARITY
PARITY_DATA = os.path.join(PARITY, "dataset", "Charades_STA")
CPU = torch.device("cpu")


def write_catalog(folder, test_features=None):
    """The parity data, its test split reading ``test_features`` (a copy of the HDF5, changed by the caller)."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(os.path.join(PARITY_DATA, "vgg_rgb_features.hdf5"), folder / "train.h5")
    shutil.copy(os.path.join(PARITY_DATA, "vgg_rgb_features.hdf5"), folder / "test.h5")
    if test_features is not None:
        with h5py.File(folder / "test.h5", "r+") as f:
            test_features(f)
    catalog = folder / "catalog.yaml"
    catalog.write_text(f"p_train: {{format: charades, ann_file: {PARITY_DATA}/charades_train.json, feat_file: train.h5}}\n"
                       f"p_test: {{format: charades, ann_file: {PARITY_DATA}/charades_test.json, feat_file: test.h5}}\n")
    return str(catalog)


def cfg_for(text_encoder, catalog, output_dir, *opts):
    return load_config(os.path.join(PARITY, "config.yaml"), [
        "MODEL.DEVICE", "cpu", "MODEL.MMN.TEXT_ENCODER.PRETRAINED", text_encoder, "DATASETS.NAME", "",
        "DATASETS.CATALOG_FILE", catalog, "DATASETS.TRAIN", "('p_train',)", "DATASETS.TEST", "('p_test',)",
        "SOLVER.MAX_EPOCH", "1", "OUTPUT_DIR", str(output_dir), "SEED", "7", *opts])


def snapshot(folder):
    return {p: os.path.getsize(os.path.join(folder, p)) for p in sorted(os.listdir(folder))}


# ------------------------------------------------------------------------------------- OUTPUT_DIR reuse
def test_second_run_into_the_same_output_dir_is_refused_and_changes_nothing(parity_text_encoder_dir, tmp_path):
    catalog = write_catalog(tmp_path / "data")
    out = tmp_path / "run"
    engine.train(cfg_for(parity_text_encoder_dir, catalog, out), CPU)
    before = snapshot(out)
    metrics_before = (out / "metrics.jsonl").read_text()
    with pytest.raises(ConfigError) as err:
        engine.train(cfg_for(parity_text_encoder_dir, catalog, out, "SOLVER.LR", "0.5"), CPU)
    message = str(err.value)
    assert str(out) in message and "--resume" in message and "--overwrite" in message
    assert len(message.splitlines()) == 1
    assert snapshot(out) == before and (out / "metrics.jsonl").read_text() == metrics_before
    # the explicit overwrite starts afresh: one epoch line, not two
    engine.train(cfg_for(parity_text_encoder_dir, catalog, out), CPU, overwrite=True)
    assert [json.loads(line)["epoch"] for line in (out / "metrics.jsonl").read_text().splitlines()] == [1]


def test_a_folder_with_only_other_files_is_fine(parity_text_encoder_dir, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    engine.check_output_dir(str(out))  # no run files: nothing to refuse
    (out / "model_3e.pth").write_bytes(b"x")
    with pytest.raises(ConfigError, match="model_3e.pth"):
        engine.check_output_dir(str(out))
    engine.check_output_dir(str(out), resume="last")  # resuming is the point


# ------------------------------------------------------------------------------------- failing evaluation
def test_nan_features_in_a_test_video_keep_the_trained_epoch(parity_text_encoder_dir, tmp_path):
    def poison(f):
        data = f["VY1GQ"][:]
        data[3] = np.nan
        del f["VY1GQ"]
        f.create_dataset("VY1GQ", data=data)

    catalog = write_catalog(tmp_path / "data", poison)
    out = tmp_path / "run"
    cfg = cfg_for(parity_text_encoder_dir, catalog, out)
    with pytest.raises(FeatureError) as err:
        engine.train(cfg, CPU)
    assert "test.h5" in str(err.value) and "'VY1GQ'" in str(err.value)
    assert (out / "last_checkpoint").read_text().strip() == "model_1e.pth"
    model = build_model(cfg)
    data = load_model_weights(model, str(out / "model_1e.pth"))
    assert data["epoch"] == 1
    assert not (out / "metrics.jsonl").exists()  # the epoch's record waits for its evaluation
    # once the features are mended, --resume evaluates the saved epoch and writes its line
    mended = cfg_for(parity_text_encoder_dir, write_catalog(tmp_path / "mended"), out)
    engine.train(mended, CPU, resume="last")
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1] and "test" in records[0]


def test_wrong_feature_dimension_in_a_test_video_stops_before_training(parity_text_encoder_dir, tmp_path,
                                                                       monkeypatch):
    def widen(f):
        data = f["GQYR9"][:]
        del f["GQYR9"]
        f.create_dataset("GQYR9", data=np.concatenate([data, data], axis=1))

    catalog = write_catalog(tmp_path / "data", widen)
    steps = []
    monkeypatch.setattr("mmn.engine.trainer.run_step", lambda *a, **k: steps.append(1))
    with pytest.raises(FeatureError) as err:
        engine.train(cfg_for(parity_text_encoder_dir, catalog, tmp_path / "run"), CPU)
    assert "test.h5" in str(err.value) and "'GQYR9'" in str(err.value)
    assert steps == []


@pytest.mark.parametrize("opts, named", [
    (("DATASETS.TEST", "('p_tset',)"), ["DATASETS.TEST", "'p_tset'"]),
    (("DATASETS.NAME", "charades"), ["DATASETS.NAME", "'charades'", "'p'"]),
])
def test_mistyped_split_or_dataset_name_stops_at_the_config(parity_text_encoder_dir, tmp_path, opts, named):
    catalog = write_catalog(tmp_path / "data")
    with pytest.raises(ConfigError) as err:
        cfg_for(parity_text_encoder_dir, catalog, tmp_path / "run", *opts)
    for item in named:
        assert item in str(err.value)
    assert not (tmp_path / "run").exists()


# ------------------------------------------------------------------------------------- --resume parsing
@pytest.mark.parametrize("argv, resume, opts", [
    (["--resume", "--config-file", "c.yaml", "SOLVER.LR", "0.1"], "last", ["SOLVER.LR", "0.1"]),
    (["--config-file", "c.yaml", "--resume", "SOLVER.LR", "0.1"], "last", ["SOLVER.LR", "0.1"]),
    (["--config-file", "c.yaml", "SOLVER.LR", "0.1", "--resume"], "last", ["SOLVER.LR", "0.1"]),
    (["--config-file", "c.yaml", "SOLVER.LR", "0.1", "--resume", "out/model_2e.pth"], "out/model_2e.pth",
     ["SOLVER.LR", "0.1"]),
    (["--resume", "out/model_2e.pth", "--config-file", "c.yaml", "SOLVER.LR", "0.1"], "out/model_2e.pth",
     ["SOLVER.LR", "0.1"]),
    (["--config-file", "c.yaml", "--resume=m.pth", "SOLVER.LR", "0.1"], "m.pth", ["SOLVER.LR", "0.1"]),
    (["--config-file", "c.yaml", "SOLVER.LR", "0.1", "MODEL.MMN.PREDICTOR.TILE_ROWS", "-1"], None,
     ["SOLVER.LR", "0.1", "MODEL.MMN.PREDICTOR.TILE_ROWS", "-1"]),
    (["--config-file", "c.yaml", "SOLVER.LR", "0.1", "--overwrite", "SEED", "3"], None,
     ["SOLVER.LR", "0.1", "SEED", "3"]),
])
def test_resume_parses_anywhere(argv, resume, opts):
    args = parse_args(argument_parser("train"), argv)
    assert args.resume == resume and args.opts == opts and args.config_file == "c.yaml"


def test_atomic_write_never_replaces_a_device_or_folder(tmp_path):
    from mmn.utils.checkpoint import CheckpointError, atomic_write_text

    with pytest.raises(CheckpointError, match="not a regular file"):
        atomic_write_text("x", os.devnull)
    assert not os.path.isfile(os.devnull)  # still the device
    (tmp_path / "folder").mkdir()
    with pytest.raises(CheckpointError, match="not a regular file"):
        atomic_write_text("x", str(tmp_path / "folder"))
    atomic_write_text("x", str(tmp_path / "file.txt"))
    assert (tmp_path / "file.txt").read_text() == "x"
