"""The dataset catalog: one's own dataset declared in a DATASETS.CATALOG_FILE (no Python, no symlinks), the
dataset name derived from the splits, and mistakes reported with the file and the key before anything
is built; the model's geometry checked at config time."""
import json
import os
import shutil

import pytest
import torch

from mmn.config import load_config
from mmn.config.loading import ConfigError
from mmn.data.catalog import builtin_entries, dataset_name_of_split, read_catalog_file
from mmn import engine
from mmn.modeling import build_model

from helpers.paths import PARITY_DIR as PARITY, REPO_ROOT as ROOT
PARITY_DATA = os.path.join(PARITY, "dataset", "Charades_STA")
CPU = torch.device("cpu")


@pytest.fixture
def own_dataset(tmp_path):
    """The parity fixture's files under names of their own, in a folder outside DATASETS.ROOT."""
    folder = tmp_path / "elsewhere" / "lab_videos"
    (folder / "ann").mkdir(parents=True)
    shutil.copy(os.path.join(PARITY_DATA, "charades_train.json"), folder / "ann" / "fit_split.json")
    shutil.copy(os.path.join(PARITY_DATA, "charades_test.json"), folder / "ann" / "eval_split.json")
    shutil.copy(os.path.join(PARITY_DATA, "vgg_rgb_features.hdf5"), folder / "vgg.h5")
    catalog = folder / "catalog.yaml"
    catalog.write_text("labvids_train: {format: charades, ann_file: ann/fit_split.json, feat_file: vgg.h5}\n"
                       "labvids_test:  {format: charades, ann_file: ann/eval_split.json, feat_file: vgg.h5, "
                       "iou_thresholds: [0.3, 0.5, 0.7]}\n")
    return str(catalog)


def own_cfg(text_encoder, catalog, output_dir, *opts):
    return load_config(os.path.join(PARITY, "config.yaml"), [
        "MODEL.DEVICE", "cpu", "MODEL.MMN.TEXT_ENCODER.PRETRAINED", text_encoder, "DATASETS.NAME", "",
        "DATASETS.ROOT", "/nonexistent/root", "DATASETS.CATALOG_FILE", catalog,
        "DATASETS.TRAIN", "('labvids_train',)", "DATASETS.TEST", "('labvids_test',)",
        "SOLVER.MAX_EPOCH", "1", "OUTPUT_DIR", str(output_dir), "SEED", "7", *opts])


def test_trains_and_evaluates_on_a_dataset_declared_only_in_a_catalog_file(parity_text_encoder_dir, own_dataset,
                                                                           tmp_path, capsys):
    import test_net

    cfg = own_cfg(parity_text_encoder_dir, own_dataset, tmp_path / "run")
    assert cfg.DATASETS.NAME == "labvids"
    engine.train(cfg, CPU)
    record = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[-1])
    assert set(record["test"]) == {f"R@{n},IoU@{t}" for n in (1, 5) for t in ("0.3", "0.5", "0.7")} | {"mIoU"}
    assert (tmp_path / "run" / "best_labvids.pth").is_file()
    # test_net.py with the checkpoint alone reproduces the run's recall table
    capsys.readouterr()
    out = tmp_path / "results.json"
    test_net.main(["--ckpt", str(tmp_path / "run" / "model_1e.pth"), "--out", str(out)])
    assert json.loads(out.read_text())["metrics"] == record["test"]
    assert "R@1,IoU@0.3" in capsys.readouterr().out


def test_test_iou_thresholds_override_the_entry(parity_text_encoder_dir, own_dataset, tmp_path):
    cfg = own_cfg(parity_text_encoder_dir, own_dataset, tmp_path, "TEST.IOU_THRESHOLDS", "(0.1,)", "TEST.RECALLS",
                  "(1,)")
    model = build_model(cfg)
    from mmn.data import make_data_loader
    from mmn.modeling import build_dataset
    from mmn.engine.inference import evaluate

    metrics, _, _ = evaluate(cfg, model, make_data_loader(cfg, build_dataset(cfg, "labvids_test"), False), CPU)
    assert set(metrics) == {"R@1,IoU@0.1", "mIoU"}


def test_mistyped_split_names_the_catalog_and_the_key(parity_text_encoder_dir, own_dataset, tmp_path):
    with pytest.raises(ConfigError) as err:
        own_cfg(parity_text_encoder_dir, own_dataset, tmp_path, "DATASETS.TEST", "('labvid_test',)")
    message = str(err.value)
    assert "DATASETS.TEST" in message and "'labvid_test'" in message and own_dataset in message
    assert "labvids_test" in message  # the known names


@pytest.mark.parametrize("line, named", [
    ("x_train: {format: charades, ann_fle: a.json, feat_file: f.h5}", ["'x_train'", "ann_fle"]),
    ("x_train: {format: charade, ann_file: a.json, feat_file: f.h5}", ["'x_train'", "'charade'"]),
    ("x_train: {format: charades, feat_file: f.h5}", ["'x_train'", "ann_file"]),
    ("x_train: {format: charades, ann_file: a.json, feat_file: f.h5, iou_thresholds: [0.5, 7]}",
     ["'x_train'", "iou_thresholds"]),
    ("x_train: [charades, a.json]", ["'x_train'"]),
    ("x_train: {format: charades, ann_file: a.json", ["malformed YAML"]),
])
def test_catalog_entry_mistakes_name_the_file_and_the_entry(tmp_path, line, named):
    catalog = tmp_path / "catalog.yaml"
    catalog.write_text(line + "\n")
    with pytest.raises(ConfigError) as err:
        load_config(None, ["DATASETS.CATALOG_FILE", str(catalog), "DATASETS.TRAIN", "('x_train',)"])
    for item in [str(catalog)] + named:
        assert item in str(err.value), (item, str(err.value))


def test_missing_catalog_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="absent.yaml"):
        load_config(None, ["DATASETS.CATALOG_FILE", str(tmp_path / "absent.yaml")])


def test_dataset_name_is_derived_and_checked():
    assert load_config(None, ["DATASETS.TRAIN", "('tacos_train',)", "DATASETS.TEST", "('tacos_test',)",
                              "MODEL.MMN.FEAT2D.POOLING_COUNTS", "[15]", "MODEL.MMN.NUM_CLIPS", "16",
                              "INPUT.NUM_PRE_CLIPS", "32"]).DATASETS.NAME == "tacos"
    with pytest.raises(ConfigError) as err:
        load_config(None, ["DATASETS.NAME", "charades", "DATASETS.TRAIN", "('tacos_train',)",
                           "MODEL.MMN.FEAT2D.POOLING_COUNTS", "[15]", "MODEL.MMN.NUM_CLIPS", "16",
                           "INPUT.NUM_PRE_CLIPS", "32"])
    assert "DATASETS.NAME 'charades'" in str(err.value) and "'tacos'" in str(err.value)
    with pytest.raises(ConfigError, match="different datasets"):
        load_config(None, ["DATASETS.TRAIN", "('tacos_train',)", "DATASETS.TEST", "('charades_test',)",
                           "MODEL.MMN.FEAT2D.POOLING_COUNTS", "[15]", "MODEL.MMN.NUM_CLIPS", "16",
                           "INPUT.NUM_PRE_CLIPS", "32"])


def test_builtin_entries_are_the_official_layout():
    entries = builtin_entries("dataset")
    assert sorted(entries) == ["activitynet_test", "activitynet_train", "activitynet_val", "charades_test",
                               "charades_train", "qvhighlights_test", "qvhighlights_train", "qvhighlights_val",
                               "tacos_test", "tacos_train", "tacos_val"]
    assert entries["activitynet_val"].ann_file == os.path.join("dataset", "ActivityNet", "val.json")
    assert entries["activitynet_val"].feat_key == "c3d_features" and entries["charades_test"].feat_key is None
    assert entries["tacos_test"].iou_thresholds == (0.1, 0.3, 0.5)
    assert dataset_name_of_split("my_data_val") == "my_data" and dataset_name_of_split("train") == "train"


def test_catalog_paths_are_relative_to_the_file_and_dataset_field_wins(tmp_path):
    catalog = tmp_path / "sub" / "c.yaml"
    catalog.parent.mkdir()
    catalog.write_text("a_test: {format: tacos, ann_file: x/t.json, feat_file: f.h5, feat_key: feats, dataset: abc}\n")
    entry = read_catalog_file(str(catalog))["a_test"]
    assert entry.ann_file == str(tmp_path / "sub" / "x" / "t.json") and entry.feat_key == "feats"
    assert entry.dataset == "abc" and entry.iou_thresholds == (0.3, 0.5, 0.7)


@pytest.mark.parametrize("opts, named", [
    (["INPUT.NUM_PRE_CLIPS", "40"], ["INPUT.NUM_PRE_CLIPS", "NUM_CLIPS", "KERNEL_SIZE"]),
    (["MODEL.MMN.FEATPOOL.KERNEL_SIZE", "4"], ["KERNEL_SIZE", "NUM_CLIPS"]),
    (["MODEL.MMN.FEAT2D.POOLING_COUNTS", "[15, 8]"], ["POOLING_COUNTS", "NUM_CLIPS"]),
    (["MODEL.MMN.FEAT2D.POOLING_COUNTS", "[16]"], ["POOLING_COUNTS", "NUM_CLIPS"]),
])
def test_incompatible_geometry_is_a_config_error(opts, named):
    # pool_charades: NUM_PRE_CLIPS 32, KERNEL_SIZE 2, NUM_CLIPS 16, POOLING_COUNTS [15]
    base = os.path.join(ROOT, "configs", "pool_charades_16x16_k5l8.yaml")
    load_config(base)  # the official config itself is fine
    with pytest.raises(ConfigError) as err:
        load_config(base, opts)
    for item in named:
        assert item in str(err.value), (item, str(err.value))
