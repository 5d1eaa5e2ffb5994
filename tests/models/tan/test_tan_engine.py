"""2D-TAN through the shared engine: the catalog, the loaders, run_inference + recall_metrics (the official
table on the fixture), the validation-loss schedule, train_net/test_net's engine.train / evaluate_checkpoint."""
import json
import os

import pytest
import torch

from mmn.data import make_data_loader
from mmn.modeling import build_dataset
from mmn import engine
from mmn.engine.inference import evaluate, recall_metrics, run_inference
from mmn.modeling import build_model
from mmn.modeling.tan import TAN
from mmn.utils.checkpoint import load_model_weights

from tan_fixture import CHECKPOINT, DATA_DIR, load_expected, official_to_cfg, write_catalog

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def expected():
    return load_expected()


@pytest.fixture(scope="module")
def catalog(tmp_path_factory):
    return write_catalog(tmp_path_factory.mktemp("tan_catalog"))


def engine_cfg(expected, catalog, **extra):
    opts = {"DATASETS.CATALOG_FILE": catalog, "DATASETS.TRAIN": ("tanfx_train",), "DATASETS.TEST": ("tanfx_test",),
            "TEST.STRICT_IOU": True, "DATALOADER.NUM_WORKERS": 0}
    opts.update(extra)
    return official_to_cfg(expected["config"], **opts)


@pytest.mark.parametrize("test_batch", [32, 3])
def test_engine_evaluation_gives_the_official_table(expected, catalog, test_batch):
    """Batches of any size give the same answers (one item per query, each ranked on its own)."""
    cfg = engine_cfg(expected, catalog, **{"TEST.BATCH_SIZE": test_batch})
    model = build_model(cfg)
    load_model_weights(model, CHECKPOINT)
    dataset = build_dataset(cfg, "tanfx_test")
    moments, scores, _, _ = run_inference(model, make_data_loader(cfg, dataset, is_train=False), torch.device("cpu"))
    metrics = recall_metrics(cfg, dataset, moments)
    summary = expected["eval"]["summary"]
    for q, official in enumerate(summary["top_moments"]):
        assert torch.equal(moments[q], torch.tensor(official, dtype=torch.float64))
    for i, tiou in enumerate(summary["tious"]):
        for j, r in enumerate(summary["recalls"]):
            assert metrics[f"R@{r},IoU@{tiou:.1f}"] == float(torch.tensor(summary["table"][i, j].item()).float())
    assert metrics["mIoU"] == pytest.approx(summary["miou"], abs=1e-12)


def test_inclusive_table_is_selectable(expected, catalog, tmp_path):
    """TEST.STRICT_IOU False gives the framework's >= table from the same answers (never below the strict one)."""
    strict = engine.evaluate_checkpoint(engine_cfg(expected, catalog, **{"OUTPUT_DIR": str(tmp_path)}),
                                        torch.device("cpu"), CHECKPOINT, out=str(tmp_path / "strict.json"))
    inclusive = engine.evaluate_checkpoint(
        engine_cfg(expected, catalog, **{"TEST.STRICT_IOU": False, "OUTPUT_DIR": str(tmp_path)}), torch.device("cpu"),
        CHECKPOINT, out=str(tmp_path / "inclusive.json"))
    assert all(inclusive[k] >= strict[k] for k in strict)


def test_validation_loss_steps_the_plateau(expected, catalog):
    """With DATASETS.VAL the engine's evaluation records the validation loss (= the official evaluation loss)
    and the schedule steps on its negative."""
    cfg = engine_cfg(expected, catalog, **{"DATASETS.VAL": ("tanfx_val",)})
    model = build_model(cfg)
    load_model_weights(model, CHECKPOINT)
    optimizer, scheduler = model.build_optimizer(cfg)
    record = {"epoch": 1, "loss": 1.0}
    record["val"], _, _ = evaluate(cfg, model, make_data_loader(cfg, build_dataset(cfg, "tanfx_val"), is_train=False),
                                   torch.device("cpu"))
    model.end_epoch(scheduler, record)
    assert record["val"]["loss"] == pytest.approx(expected["eval"]["loss"], abs=1e-5)
    assert scheduler.best == pytest.approx(-expected["eval"]["loss"], abs=1e-5)
    assert model.training  # the evaluation gives the model back in training mode


def test_train_net_and_test_net(expected, catalog, tmp_path):
    """One epoch through engine.train (train_net.py), then evaluate_checkpoint (test_net.py) of its checkpoint with the
    config the checkpoint carries."""
    cfg = engine_cfg(expected, catalog, **{"OUTPUT_DIR": str(tmp_path), "SOLVER.MAX_EPOCH": 1,
                                           "DATASETS.VAL": ("tanfx_val",)})
    engine.train(cfg, torch.device("cpu"))
    records = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
    assert len(records) == 1 and "loss" in records[0]["val"] and set(records[0]["test"]) >= {"R@1,IoU@0.5", "mIoU"}
    checkpoint = str(tmp_path / "model_1e.pth")
    from mmn.config import load_config

    tested = engine.evaluate_checkpoint(load_config(None, [], checkpoint=checkpoint), torch.device("cpu"), checkpoint,
                                        out=str(tmp_path / "results.json"))
    assert tested == records[0]["test"]
    from mmn.predict import Predictor

    predictor = Predictor.from_checkpoint(checkpoint, device="cpu")
    features = predictor.load_features(os.path.join(DATA_DIR, "vgg_rgb_features.hdf5"), "LDNE2")
    (prediction,) = predictor.predict(features, 31.83, ["person takes a book from the table."])
    assert len(prediction.moments) == 5 and all(0 <= m.start < m.end <= 31.83 + 1e-4 for m in prediction.moments)
    assert [m.score for m in prediction.moments] == sorted((m.score for m in prediction.moments), reverse=True)


def test_prediction_tokens_follow_the_annotation_format_not_the_dataset_name(expected, catalog):
    """A free sentence is tokenised as the training data's format tokenises it: the fixture's splits are
    Charades-format under the dataset name "tanfx", so the final "." is dropped at prediction as in training."""
    cfg = engine_cfg(expected, catalog)
    assert cfg.DATASETS.NAME == "tanfx"
    dataset = build_dataset(cfg, "tanfx_test")
    sentence = dataset.query_sentences()[0]
    assert sentence.endswith(".")
    item = dataset[0]
    features = dataset.features.read(dataset.query_video_ids()[0])
    batch = TAN.build_query_batch(cfg, features, float(dataset.query_durations()[0]), [sentence])
    words = int(batch.txt_mask[0].sum())
    assert words == len(item["word_vectors"])
    assert torch.equal(batch.word_vectors[0, :words], item["word_vectors"])


def test_glove_text_is_read_once_for_all_splits(expected, catalog, monkeypatch):
    import mmn.modeling.tan.data as tan_data

    calls = []
    original = tan_data.load_glove_text
    monkeypatch.setattr(tan_data, "_GLOVE_CACHE", {})
    monkeypatch.setattr(tan_data, "load_glove_text", lambda *a, **k: calls.append(k["words"]) or original(*a, **k))
    cfg = engine_cfg(expected, catalog, **{"DATASETS.VAL": ("tanfx_val",)})
    for split in ("tanfx_train", "tanfx_val", "tanfx_test"):
        build_dataset(cfg, split)
    assert len(calls) == 1 and {"girl", "cabinet", "undress"} <= calls[0]
