"""Every model of the package's registry through the model contract (mmn/modeling/base.py), so that a new model
is tested the moment it registers: built from its small demo config (mmn/demo/__main__.py DEMO_MODELS) on a
few synthetic Charades-STA videos, one training step of the engine, a checkpoint round trip, an evaluation
and a prediction."""
import math
import os

import pytest
import torch

from mmn.config import load_config
from mmn.data import make_data_loader
from mmn.data.dataset import GroundingDataset
from mmn.demo import OfflineTextEncoderError, write_synthetic_charades
from mmn.demo.__main__ import DEMO_MODELS
from mmn.demo.synthetic import FEATURE_FILE, FOLDER
from mmn.engine import evaluate, run_step
from mmn.modeling import MODEL_REGISTRY, GroundingModel, build_dataset, build_model, get_model_class
from mmn.predict import Predictor
from mmn.utils.checkpoint import Checkpointer
from mmn.utils.seed import seed_everything

CPU = torch.device("cpu")
# the models of the package (not those a test registers on the side, such as test_model_contract's toy)
PACKAGE_MODELS = sorted(name for name, cls in MODEL_REGISTRY.items() if cls.__module__.startswith("mmn.modeling."))


def small_config(name, data_dir, output_dir):
    """The model's demo config on ``data_dir``, shrunk: batches of 4, no loader workers, the CPU."""
    if name.lower() not in DEMO_MODELS:
        pytest.fail(f"registered model {name} has no small config: add it to DEMO_MODELS (mmn/demo/__main__.py)")
    config_file, text_resources = DEMO_MODELS[name.lower()]
    try:
        resources = text_resources()
    except OfflineTextEncoderError as err:
        pytest.skip(str(err))
    return load_config(config_file, [*resources, "DATASETS.ROOT", str(data_dir), "OUTPUT_DIR", str(output_dir),
                                     "MODEL.DEVICE", "cpu", "DATALOADER.NUM_WORKERS", "0", "SOLVER.BATCH_SIZE", "4",
                                     "TEST.BATCH_SIZE", "4"])


def assert_same(a, b, where="state"):
    """Nested dicts / lists of tensors and plain values, equal exactly."""
    if isinstance(a, dict):
        assert set(a) == set(b), where
        for key in a:
            assert_same(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for k, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{where}[{k}]")
    elif torch.is_tensor(a):
        assert torch.equal(a, b), where
    else:
        assert a == b, where


@pytest.mark.parametrize("name", PACKAGE_MODELS)
def test_a_registered_model_builds_trains_checkpoints_evaluates_and_predicts(name, tmp_path):
    cfg = small_config(name, tmp_path / "data", tmp_path / "run")
    assert cfg.MODEL.ARCHITECTURE == name and get_model_class(cfg) is MODEL_REGISTRY[name]
    feat_dim, _ = get_model_class(cfg).feature_dim(cfg)
    write_synthetic_charades(str(tmp_path / "data"), num_train_videos=8, num_test_videos=4, feat_dim=feat_dim,
                             seed=cfg.SEED)

    # build: the model, its datasets (the dataset protocol), its optimiser
    seed_everything(cfg.SEED)
    model = build_model(cfg)
    assert isinstance(model, GroundingModel)
    train_set = build_dataset(cfg, cfg.DATASETS.TRAIN[0], is_train=True)
    test_set = build_dataset(cfg, cfg.DATASETS.TEST[0])
    for dataset in (train_set, test_set):
        assert isinstance(dataset, GroundingDataset) and dataset.split in cfg.DATASETS.TRAIN + cfg.DATASETS.TEST
        q = dataset.num_queries
        assert dataset.query_moments().shape == (q, 2) and dataset.query_durations().shape == (q,)
        assert len(dataset.query_video_ids()) == q and len(dataset.query_sentences()) == q
    optimizer, scheduler = model.build_optimizer(cfg)

    # one training step of the engine moves the weights
    model.set_epoch(1)
    model.train()
    batch = next(iter(make_data_loader(cfg, train_set, is_train=True)))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    logs = run_step(model, batch, optimizer, epoch=1)
    assert math.isfinite(logs["loss"])
    assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items())
    model.end_epoch(scheduler, {"epoch": 1, **logs})

    # checkpoint round trip: weights, optimiser and schedule come back exactly
    checkpointer = Checkpointer(str(tmp_path / "run"), cfg)
    path = checkpointer.save("model_1e.pth", model=model, optimizer=optimizer, scheduler=scheduler, epoch=1,
                             last=True, record={"epoch": 1, **logs})
    restored = build_model(cfg)
    restored_optimizer, restored_scheduler = restored.build_optimizer(cfg)
    next_epoch, _, record, _ = checkpointer.resume(path, restored, restored_optimizer, restored_scheduler)
    assert next_epoch == 2 and record["loss"] == logs["loss"]
    assert_same(model.state_dict(), restored.state_dict())
    assert_same(optimizer.state_dict(), restored_optimizer.state_dict(), "optimizer")
    if scheduler is not None:
        assert_same(scheduler.state_dict(), restored_scheduler.state_dict(), "scheduler")

    # evaluation: the recall table of the test split, the same from the restored model
    loader = make_data_loader(cfg, test_set, is_train=False)
    metrics, moments, scores = evaluate(cfg, model, loader, CPU)
    assert {"mIoU"} | {k for k in metrics if k.startswith("R@1,")} <= set(metrics) and len(metrics) > 1
    assert moments.shape[0] == test_set.num_queries and moments.shape[-1] == 2
    again, _, _ = evaluate(cfg, restored, loader, CPU)
    assert again == metrics

    # prediction from the checkpoint alone
    predictor = Predictor.from_checkpoint(path, device="cpu")
    vid, duration = test_set.query_video_ids()[0], float(test_set.query_durations()[0])
    features = predictor.load_features(os.path.join(tmp_path, "data", FOLDER, FEATURE_FILE), vid)
    (prediction,) = predictor.predict(features, duration, [test_set.query_sentences()[0]])
    assert prediction.moments and all(0 <= m.start <= m.end <= duration + 1e-4 for m in prediction.moments)
    assert [m.score for m in prediction.moments] == sorted((m.score for m in prediction.moments), reverse=True)
