"""The 2D-TAN parity fixture (tests/fixtures/tan_parity, see its README): the official config mapped onto
MODEL.TAN, the fixture's datasets and model. Imported by the tests/test_tan_*.py files."""
import os
import types

import torch

from mmn.config import get_default_config

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURE_DIR = os.path.join(HERE, "fixtures", "tan_parity")
DATA_DIR = os.path.join(FIXTURE_DIR, "data", "Charades-STA")
EXPECTED = os.path.join(FIXTURE_DIR, "tan_expected.pt")
CHECKPOINT = os.path.join(FIXTURE_DIR, "checkpoint_init.pkl")
GLOVE = os.path.join(FIXTURE_DIR, "glove_stub.txt")
TOL = 1e-5


def load_expected():
    return torch.load(EXPECTED, map_location="cpu", weights_only=True)


def official_to_cfg(official, **extra):
    """A frozen framework config with the values of the official config dict ``official``."""
    cfg = get_default_config()
    cfg.defrost()
    cfg.MODEL.ARCHITECTURE = "TAN"
    cfg.MODEL.DEVICE = "cpu"
    cfg.DATASETS.NAME = official["DATASET"]["NAME"].lower()
    t, o = cfg.MODEL.TAN, official["TAN"]
    t.NUM_SAMPLE_CLIPS = official["DATASET"]["NUM_SAMPLE_CLIPS"]
    t.TARGET_STRIDE = official["DATASET"]["TARGET_STRIDE"]
    t.NORMALIZE = official["DATASET"]["NORMALIZE"]
    for key, value in o["FRAME_MODULE"]["PARAMS"].items():
        t.FRAME_MODULE[key] = value
    t.PROP_MODULE.NAME = o["PROP_MODULE"]["NAME"]
    t.PROP_MODULE.NUM_SCALE_LAYERS = list(o["PROP_MODULE"]["PARAMS"]["NUM_SCALE_LAYERS"])
    t.PROP_MODULE.HIDDEN_SIZE = o["PROP_MODULE"]["PARAMS"].get("HIDDEN_SIZE", t.FRAME_MODULE.HIDDEN_SIZE)
    fusion = o["FUSION_MODULE"]["PARAMS"]
    for key in ("HIDDEN_SIZE", "TXT_INPUT_SIZE", "TXT_HIDDEN_SIZE"):
        t.FUSION_MODULE[key] = fusion[key]
    t.FUSION_MODULE.LSTM.NUM_LAYERS = fusion["LSTM"]["NUM_LAYERS"]
    t.FUSION_MODULE.LSTM.BIDIRECTIONAL = fusion["LSTM"]["BIDIRECTIONAL"]
    for key, value in o["MAP_MODULE"]["PARAMS"].items():
        t.MAP_MODULE[key] = list(value) if isinstance(value, (list, tuple)) else value
    t.PRED_INPUT_SIZE = o["PRED_INPUT_SIZE"]
    for key, value in official["LOSS"]["PARAMS"].items():
        t.LOSS[key] = value
    t.SOLVER.LR = official["TRAIN"]["LR"]
    t.SOLVER.WEIGHT_DECAY = official["TRAIN"]["WEIGHT_DECAY"]
    t.SOLVER.FACTOR = official["TRAIN"]["FACTOR"]
    t.SOLVER.PATIENCE = official["TRAIN"]["PATIENCE"]
    t.GLOVE = GLOVE
    cfg.SOLVER.MAX_GRAD_NORM = 10.0
    cfg.SOLVER.BATCH_SIZE = official["TRAIN"]["BATCH_SIZE"]
    cfg.TEST.BATCH_SIZE = official["TEST"]["BATCH_SIZE"]
    cfg.TEST.NMS_THRESH = official["TEST"]["NMS_THRESH"]
    for key, value in extra.items():
        node = cfg
        *path, last = key.split(".")
        for p in path:
            node = node[p]
        node[last] = value
    if cfg.DATASETS.TRAIN or cfg.DATASETS.TEST:
        from mmn.config.loading import check_config

        cfg.DATASETS.NAME = ""
        check_config(cfg)
    cfg.freeze()
    return cfg


def write_catalog(folder):
    """A DATASETS.CATALOG_FILE naming the fixture's splits (tanfx_train, tanfx_val = the test split, tanfx_test)."""
    import yaml

    entries = {f"tanfx_{split}": {"format": "charades", "ann_file": os.path.join(DATA_DIR, f"charades_{ann}.json"),
                                  "feat_file": os.path.join(DATA_DIR, "vgg_rgb_features.hdf5"),
                                  "iou_thresholds": [0.5, 0.7]}
               for split, ann in (("train", "train"), ("val", "test"), ("test", "test"))}
    path = os.path.join(str(folder), "tan_catalog.yaml")
    with open(path, "w") as f:
        yaml.safe_dump(entries, f)
    return path


def entry(split):
    """A catalog-like entry of the fixture's Charades-STA split (absolute paths)."""
    return types.SimpleNamespace(name=f"charades_{split}", format="charades",
                                 ann_file=os.path.join(DATA_DIR, f"charades_{split}.json"),
                                 feat_file=os.path.join(DATA_DIR, "vgg_rgb_features.hdf5"), feat_key=None,
                                 iou_thresholds=(0.5, 0.7), dataset="charades")


def build_model(cfg, state=None):
    from mmn.modeling import build_model as build
    from mmn.utils.checkpoint import load_model_weights

    torch.manual_seed(0)
    model = build(cfg)
    load_model_weights(model, state if state is not None else CHECKPOINT)
    return model
