"""Fixture-shaped folders for a smoke check of the parity tooling, NOT parity evidence.

The official code cannot run here, so the "expected" outputs of these folders are produced by this
implementation itself (``tan_fixture.replay`` / ``mmn_fixture.replay``) on generated data. A report that
passes on them shows only that the tooling reads the layouts (ActivityNet and TACoS JSON, a validation
split, the test interval in updates, the scheduler stepped on the validation loss, another dataset's
catalog entry) and compares what it should; a report that fails on them after one recorded value is
changed shows it can fail. Parity itself rests on the official fixtures (tests/fixtures/tan_parity, parity).

    python tests/smoke_fixtures.py tan ActivityNet OUT_DIR      (or TACoS)
    python tests/smoke_fixtures.py mmn TACoS OUT_DIR
"""
import json
import os
import shutil
import sys

import h5py
import numpy as np
import torch
import yaml

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

HERE = os.path.dirname(os.path.abspath(__file__))
VARIANT = "smoke: generated data, outputs of this implementation (not the official code)"
WORDS = ("a person opens the door then walks into kitchen and sits on chair takes book from table puts cup "
         "down laughs at phone").split()
UNKNOWN = ("zorbly", "quaxed")  # left out of the stub vocabulary: the unknown-word path runs


def _sentences(rng, count):
    out = []
    for _ in range(count):
        words = [WORDS[k] for k in rng.integers(0, len(WORDS), rng.integers(3, 8))]
        if rng.random() < 0.3:
            words.insert(int(rng.integers(0, len(words))), UNKNOWN[int(rng.integers(0, 2))])
        out.append(" ".join(words))
    return out


def _videos(rng, prefix, count, fmt, dim):
    """{vid: annotation entry in the official layout of ``fmt``}, {vid: raw features}."""
    annotations, features = {}, {}
    for v in range(count):
        vid = f"{prefix}{v:02d}"
        duration = float(np.round(rng.uniform(20, 120), 2))
        n = int(rng.integers(2, 4))
        stamps = []
        for _ in range(n):
            s = float(np.round(rng.uniform(0, duration * 0.8), 2))
            stamps.append([s, float(np.round(min(duration, s + rng.uniform(2, duration * 0.5)), 2))])
        if v == 1:
            stamps[0] = [stamps[0][1], stamps[0][0]]  # start >= end: dropped by the official loaders
        sentences = _sentences(rng, n)
        if fmt == "tacos":
            fps = 29.4
            annotations[vid] = {"num_frames": int(duration * fps), "fps": fps,
                                "timestamps": [[int(s * fps), int(e * fps)] for s, e in stamps], "sentences": sentences}
        else:
            annotations[vid] = {"duration": duration, "timestamps": stamps, "sentences": sentences}
        features[vid] = rng.standard_normal((int(rng.integers(3, 40)), dim)).astype(np.float32)
    return annotations, features


# ---------------------------------------------------------------------------- 2D-TAN
def tan_config(dataset, with_val):
    data_dir = {"ActivityNet": "./data/ActivityNet", "TACoS": "./data/TACoS"}[dataset]
    conv = dataset == "ActivityNet"
    prop_params = {"HIDDEN_SIZE": 32, "NUM_SCALE_LAYERS": [4, 2]} if conv else {"NUM_SCALE_LAYERS": [4, 2]}
    return {
        "WORKERS": 0, "MODEL_DIR": "./checkpoints", "RESULT_DIR": "./results", "LOG_DIR": "./log", "DATA_DIR": data_dir,
        "DATASET": {"NAME": dataset, "VIS_INPUT_TYPE": "c3d", "NO_VAL": not with_val, "NUM_SAMPLE_CLIPS": 16,
                    "TARGET_STRIDE": 2, "NORMALIZE": True, "RANDOM_SAMPLING": False},
        "TEST": {"BATCH_SIZE": 3, "RECALL": "1,5", "TIOU": "0.3,0.5,0.7", "EVAL_TRAIN": True, "NMS_THRESH": 0.5,
                 "INTERVAL": 0.8},
        "TRAIN": {"BATCH_SIZE": 4, "LR": 0.001, "WEIGHT_DECAY": 0.0, "FACTOR": 0.5, "PATIENCE": 0, "MAX_EPOCH": 2,
                  "CONTINUE": True},
        "LOSS": {"NAME": "bce_rescale_loss", "PARAMS": {"MIN_IOU": 0.5, "MAX_IOU": 1.0, "BIAS": 0.0}},
        "TAN": {"FRAME_MODULE": {"NAME": "FrameAvgPool", "PARAMS": {"INPUT_SIZE": 24, "HIDDEN_SIZE": 32, "KERNEL_SIZE": 2,
                                                                    "STRIDE": 2}},
                "PROP_MODULE": {"NAME": "SparsePropConv" if conv else "SparsePropMaxPool", "PARAMS": prop_params},
                "FUSION_MODULE": {"NAME": "BaseFusion", "PARAMS": {"HIDDEN_SIZE": 32, "TXT_INPUT_SIZE": 16,
                                                                   "TXT_HIDDEN_SIZE": 32,
                                                                   "LSTM": {"NUM_LAYERS": 2, "BIDIRECTIONAL": False}}},
                "MAP_MODULE": {"NAME": "MapConv", "PARAMS": {"INPUT_SIZE": 32, "HIDDEN_SIZES": [32, 32], "KERNEL_SIZES": [5, 5],
                                                             "STRIDES": [1, 1], "PADDINGS": [4, 0], "DILATIONS": [1, 1]}},
                "PRED_INPUT_SIZE": 32},
        "MODEL": {"NAME": "TAN", "CHECKPOINT": "./checkpoint_init.pkl"},
    }


def build_tan_fixture(folder, dataset="ActivityNet", with_val=True, seed=0):
    """A 2D-TAN fixture-shaped folder in the ActivityNet or TACoS JSON layout (see the module docstring)."""
    from mmn.modeling import build_model
    from tan_fixture import TanFixture, replay

    rng = np.random.default_rng(seed)
    os.makedirs(folder, exist_ok=True)
    config = tan_config(dataset, with_val)
    with open(os.path.join(folder, "config.yaml"), "w") as f:
        yaml.safe_dump(config, f, sort_keys=False)
    data_dir = os.path.normpath(os.path.join(folder, config["DATA_DIR"]))
    os.makedirs(data_dir, exist_ok=True)
    fmt = dataset.lower()
    features = {}
    for split, count in (("train", 4), ("val", 3), ("test", 3)):
        if split == "val" and not with_val:
            continue
        annotations, feats = _videos(rng, f"{split[:2]}", count, fmt, 24)
        features.update(feats)
        with open(os.path.join(data_dir, f"{split}.json"), "w") as f:
            json.dump(annotations, f)
    name = "sub_activitynet_v1-3.c3d.hdf5" if dataset == "ActivityNet" else "tall_c3d_features.hdf5"
    with h5py.File(os.path.join(data_dir, name), "w") as f:
        for vid, x in features.items():
            if dataset == "ActivityNet":
                f.create_group(vid).create_dataset("c3d_features", data=x)
            else:
                f.create_dataset(vid, data=x)
    with open(os.path.join(folder, "glove_stub.txt"), "w") as f:
        for word in WORDS:
            f.write(word + " " + " ".join(f"{v:.6f}" for v in rng.standard_normal(16)) + "\n")

    fx = TanFixture(folder)
    cfg = fx.cfg()
    torch.manual_seed(7)
    model = build_model(cfg)
    with torch.no_grad():  # as the official fixture: scores spread enough that rankings are not ties
        for conv in model.map_layer.convs:
            conv.weight.mul_(conv.kernel_size[0] * conv.kernel_size[1])
            conv.bias.zero_()
        model.pred_layer.weight.mul_(200)
    torch.save(model.state_dict(), fx.checkpoint)

    datasets = fx.datasets(cfg)
    orders = {s: list(range(len(datasets[s]))) for s in fx.splits}
    g = torch.Generator().manual_seed(seed)
    n = len(datasets["train"])
    batches = [perm[s:s + fx.train_batch].tolist() for _ in range(config["TRAIN"]["MAX_EPOCH"])
               for perm in [torch.randperm(n, generator=g)] for s in range(0, n, fx.train_batch)]
    record = replay(fx, batches, orders, cfg)
    record.update(variant=VARIANT, config_yaml=fx.config_yaml, config=fx.config)
    torch.save(record, fx.expected_path)
    return fx


# ---------------------------------------------------------------------------- MMN
def build_mmn_fixture(folder, dataset="TACoS", seed=0):
    """An MMN fixture-shaped folder in the TACoS (or ActivityNet) layout, the model of tests/fixtures/parity
    (its config geometry, text encoder and starting weights) on generated data (see the module docstring)."""
    from mmn_fixture import DEFAULT_DIR, MmnFixture, replay

    rng = np.random.default_rng(seed)
    os.makedirs(folder, exist_ok=True)
    shutil.copytree(os.path.join(DEFAULT_DIR, "text_encoder"), os.path.join(folder, "text_encoder"), dirs_exist_ok=True)
    shutil.copy(os.path.join(DEFAULT_DIR, "checkpoint_init.pth"), os.path.join(folder, "checkpoint_init.pth"))
    name = dataset.lower()
    with open(os.path.join(DEFAULT_DIR, "config.yaml")) as f:
        config = yaml.safe_load(f)
    config["DATASETS"] = {"NAME": name, "TRAIN": f'("{name}_train", )', "TEST": f'("{name}_test", )'}
    with open(os.path.join(folder, "config.yaml"), "w") as f:
        yaml.safe_dump(config, f, sort_keys=False)
    data_dir = os.path.join(folder, "dataset", {"tacos": "TACoS", "activitynet": "ActivityNet"}[name])
    os.makedirs(data_dir, exist_ok=True)
    features = {}
    for split, count in (("train", 8), ("test", 5)):
        annotations, feats = _videos(rng, split[:2], count, name, config["MODEL"]["MMN"]["FEATPOOL"]["INPUT_SIZE"])
        features.update(feats)
        with open(os.path.join(data_dir, f"{split}.json"), "w") as f:
            json.dump(annotations, f)
    feat_name = "tall_c3d_features.hdf5" if name == "tacos" else "sub_activitynet_v1-3.c3d.hdf5"
    with h5py.File(os.path.join(data_dir, feat_name), "w") as f:
        for vid, x in features.items():
            if name == "activitynet":
                f.create_group(vid).create_dataset("c3d_features", data=x)
            else:
                f.create_dataset(vid, data=x)
    fx = MmnFixture(folder)
    cfg = fx.cfg()
    num_videos = len(fx.datasets(cfg)["train"])
    g = torch.Generator().manual_seed(seed)
    steps = [{"epoch": epoch, "video_indices": perm[s:s + cfg.SOLVER.BATCH_SIZE].tolist()}
             for epoch in range(1, cfg.SOLVER.MAX_EPOCH + 1) for perm in [torch.randperm(num_videos, generator=g)]
             for s in range(0, num_videos, cfg.SOLVER.BATCH_SIZE)]
    record = replay(fx, cfg, steps)
    for step in record["train_steps"]:
        step.pop("bias_grad")
    with open(fx.config_file) as f:
        record.update(variant=VARIANT, config=f.read())
    torch.save(record, fx.expected_path)
    return fx


if __name__ == "__main__":
    kind, dataset, out = sys.argv[1:4]
    torch.set_num_threads(1)
    if kind == "tan":
        build_tan_fixture(out, dataset, with_val=dataset == "ActivityNet")
    else:
        build_mmn_fixture(out, dataset)
    print(out)
