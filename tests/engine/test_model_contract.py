"""A third model, written here in a few lines against the model contract (mmn/modeling/base.py), trains,
checkpoints, resumes, evaluates and predicts through the unchanged engine, on a dataset declared only in
a DATASETS.CATALOG_FILE."""
import json
import os
from dataclasses import dataclass

import h5py
import numpy as np
import pytest
import torch
from torch import nn

from yacs.config import CfgNode as CN

from mmn.config import load_config
from mmn.config.defaults import register_model_config
from mmn.data.annotations import load_annotations
from mmn.data.features import HDF5FeatureReader, resample_clips
from mmn import engine
from mmn.modeling import MODEL_REGISTRY, GroundingModel, RankedMoments, register_model
from mmn.predict import Predictor

CPU = torch.device("cpu")
FEAT_DIM, NUM_SEGMENTS = 6, 8


# ------------------------------------------------------------------------------------- the toy model
@dataclass
class ToyBatch:
    feats: torch.Tensor          # Q x NUM_SEGMENTS x D
    words: torch.Tensor          # Q: number of words of each sentence (the toy's "text encoder")
    targets: torch.Tensor        # Q x 2 normalised moments (training targets)
    durations: torch.Tensor      # Q seconds
    query_indices: torch.Tensor  # Q

    def to(self, device, non_blocking=False):
        return ToyBatch(*(t.to(device, non_blocking=non_blocking) for t in
                          (self.feats, self.words, self.targets, self.durations, self.query_indices)))


class ToyDataset(torch.utils.data.Dataset):
    """One item per query: resampled features, the sentence's word count, its normalised moment."""

    def __init__(self, entry):
        videos, _ = load_annotations(entry.ann_file, entry.format)
        self.ann_file = entry.ann_file
        self.rows = [(v.vid, v.duration, m, s) for v in videos for m, s in zip(v.moments, v.sentences)]
        self.features = HDF5FeatureReader(entry.feat_file, key=entry.feat_key, feat_dim=FEAT_DIM)

    def __len__(self):
        return len(self.rows)

    num_queries = property(__len__)

    def __getitem__(self, idx):
        vid, duration, moment, sentence = self.rows[idx]
        return resample_clips(self.features.read(vid), NUM_SEGMENTS), len(sentence.split()), moment, duration, idx

    def collator(self):
        def collate(items):
            feats, words, moments, durations, idx = zip(*items)
            durations = torch.tensor(durations, dtype=torch.float64)
            return ToyBatch(torch.stack(feats), torch.tensor(words, dtype=torch.float32),
                            (torch.tensor(moments, dtype=torch.float64) / durations[:, None]).float(), durations,
                            torch.tensor(idx))
        return collate

    def query_moments(self):
        return torch.tensor([r[2] for r in self.rows], dtype=torch.float32)

    def query_durations(self):
        return torch.tensor([r[1] for r in self.rows], dtype=torch.float64)

    def query_video_ids(self):
        return [r[0] for r in self.rows]

    def query_sentences(self):
        return [r[3] for r in self.rows]


register_model_config("TOY_REGRESSOR", CN({"DROPOUT": 0.2}))  # its own keys, declared beside it


@register_model("TOY_REGRESSOR")
class ToyRegressor(GroundingModel):
    """Regresses one (start, end) per query from the mean feature and the sentence length."""

    def __init__(self, cfg):
        super().__init__(cfg)
        self.head = nn.Linear(FEAT_DIM + 1, 2)
        self.dropout = nn.Dropout(cfg.MODEL.TOY_REGRESSOR.DROPOUT)  # so that exact resume needs the RNG state

    @classmethod
    def feature_dim(cls, cfg):
        return FEAT_DIM, "the toy's FEAT_DIM"

    @classmethod
    def build_dataset(cls, cfg, entry, is_train=False):
        return ToyDataset(entry)

    @classmethod
    def build_query_batch(cls, cfg, features, duration, sentences):
        q = len(sentences)
        return ToyBatch(resample_clips(features, NUM_SEGMENTS)[None].expand(q, -1, -1),
                        torch.tensor([len(s.split()) for s in sentences], dtype=torch.float32), torch.zeros(q, 2),
                        torch.full((q,), float(duration), dtype=torch.float64), torch.arange(q))

    def forward(self, batch, epoch=1):
        x = torch.cat([self.dropout(batch.feats.mean(dim=1)), batch.words[:, None] / 10], dim=1)
        start, length = self.head(x).sigmoid().unbind(dim=1)
        moments = torch.stack([start * (1 - length), start * (1 - length) + length], dim=1)
        if self.training:
            return {"loss": (moments - batch.targets).abs().mean()}
        return {"moments": moments}

    def rank_moments(self, outputs, batch, topk):
        seconds = outputs["moments"].double().cpu() * batch.durations.cpu()[:, None]
        return RankedMoments(seconds[:, None, :], torch.ones(len(seconds), 1))


# ------------------------------------------------------------------------------------- its dataset
def write_dataset(folder, videos=12, seed=0):
    """Charades-format annotation files and an HDF5 of our own names, declared in a catalog file."""
    rng = np.random.default_rng(seed)
    os.makedirs(os.path.join(folder, "annotations"), exist_ok=True)
    with h5py.File(os.path.join(folder, "clip_features.h5"), "w") as f:
        for v in range(videos):
            f.create_dataset(f"video{v}", data=rng.standard_normal((int(rng.integers(5, 20)), FEAT_DIM)).astype("f4"))
    for split, ids in (("fit", range(0, 8)), ("held_out", range(8, videos))):
        ann = {}
        for v in ids:
            starts = rng.uniform(0, 10, 2)
            ann[f"video{v}"] = {"duration": 20.0, "timestamps": [[float(s), float(s) + 5.0] for s in starts],
                                "sentences": ["a person walks in.", "someone opens a door quickly."]}
        with open(os.path.join(folder, "annotations", f"{split}.json"), "w") as f:
            json.dump(ann, f)
    catalog = os.path.join(folder, "my_catalog.yaml")
    with open(catalog, "w") as f:
        f.write("toyset_train: {format: charades, ann_file: annotations/fit.json, feat_file: clip_features.h5}\n"
                "toyset_test:  {format: charades, ann_file: annotations/held_out.json, feat_file: clip_features.h5,"
                " iou_thresholds: [0.1, 0.3]}\n")
    return catalog


def toy_cfg(catalog, output_dir, *opts):
    return load_config(None, ["MODEL.ARCHITECTURE", "TOY_REGRESSOR", "MODEL.DEVICE", "cpu",
                              "DATASETS.CATALOG_FILE", catalog, "DATASETS.TRAIN", "('toyset_train',)",
                              "DATASETS.TEST", "('toyset_test',)", "DATALOADER.NUM_WORKERS", "0",
                              "SOLVER.BATCH_SIZE", "4", "SOLVER.LR", "0.05", "SOLVER.MAX_EPOCH", "2",
                              "SOLVER.MILESTONES", "(10,)", "TEST.BATCH_SIZE", "5", "OUTPUT_DIR", str(output_dir),
                              "SEED", "3", *opts])


@pytest.fixture(scope="module")
def catalog(tmp_path_factory):
    return write_dataset(str(tmp_path_factory.mktemp("toy_data")))


def weights(path):
    return torch.load(path, map_location="cpu", weights_only=False)["model"]


def test_registered_through_the_contract_only(catalog, tmp_path):
    assert MODEL_REGISTRY["TOY_REGRESSOR"] is ToyRegressor
    cfg = toy_cfg(catalog, tmp_path, "MODEL.TOY_REGRESSOR.DROPOUT", "0.5")  # its config node takes overrides
    assert ToyRegressor(cfg).dropout.p == 0.5


def test_toy_model_trains_checkpoints_and_evaluates(catalog, tmp_path):
    cfg = toy_cfg(catalog, tmp_path)
    assert cfg.DATASETS.NAME == "toyset"  # derived from the splits
    best = engine.train(cfg, CPU)
    records = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
    assert [r["epoch"] for r in records] == [1, 2]
    assert records[1]["loss"] < records[0]["loss"]
    # the entry's thresholds, R@1 only (the toy returns one moment)
    assert set(records[1]["test"]) == {"R@1,IoU@0.1", "R@1,IoU@0.3", "mIoU"}
    for name in ("model_1e.pth", "model_2e.pth", f"best_{cfg.DATASETS.NAME}.pth"):
        assert os.path.isfile(tmp_path / name)
    assert best["epoch"] in (1, 2)
    metrics = engine.evaluate_checkpoint(cfg, CPU, str(tmp_path / "model_2e.pth"), vis=1)
    assert metrics == records[1]["test"]
    assert os.path.isfile(tmp_path / "vis" / "query_00000_timeline.png")
    assert not os.path.exists(tmp_path / "vis" / "query_00000_map.png")  # no score map: timeline only


def test_toy_model_resumes_exactly(catalog, tmp_path):
    engine.train(toy_cfg(catalog, tmp_path / "straight"), CPU)
    engine.train(toy_cfg(catalog, tmp_path / "resumed", "SOLVER.MAX_EPOCH", "1"), CPU)
    engine.train(toy_cfg(catalog, tmp_path / "resumed"), CPU, resume="last")
    straight, resumed = weights(tmp_path / "straight" / "model_2e.pth"), weights(tmp_path / "resumed" / "model_2e.pth")
    assert all(torch.equal(straight[k], resumed[k]) for k in straight)
    lines = [open(tmp_path / run / "metrics.jsonl").read().splitlines() for run in ("straight", "resumed")]
    drop_time = [[{k: v for k, v in json.loads(line).items() if k != "time_s"} for line in run] for run in lines]
    assert drop_time[0] == drop_time[1]


def test_test_net_and_predictor_need_only_the_checkpoint(catalog, tmp_path, capsys):
    import test_net

    cfg = toy_cfg(catalog, tmp_path)
    engine.train(cfg, CPU)
    ckpt = str(tmp_path / "model_2e.pth")
    expected = json.loads(open(tmp_path / "metrics.jsonl").read().splitlines()[-1])["test"]
    out = tmp_path / "again.json"
    test_net.main(["--ckpt", ckpt, "--out", str(out)])  # no --config-file: the checkpoint's own
    assert json.loads(out.read_text())["metrics"] == expected

    predictor = Predictor.from_checkpoint(ckpt)
    assert isinstance(predictor.model, ToyRegressor)
    features = torch.randn(9, FEAT_DIM)
    (prediction,) = predictor.predict(features, 30.0, ["a person walks in."], topk=5)
    assert len(prediction.moments) == 1 and prediction.score_map is None
    assert 0 <= prediction.moments[0].start <= prediction.moments[0].end <= 30.0


def test_a_checkpoint_with_another_process_s_model_nodes_still_loads(tmp_path):
    """A config dumped where a plugin model declared MODEL.<X> loads where that plugin is absent."""
    from mmn.config import get_default_config
    from mmn.utils.checkpoint import atomic_save

    cfg = get_default_config()
    cfg.MODEL.PLUGIN_ELSEWHERE = CN({"SIZE": 3})
    atomic_save({"model": {}, "config": cfg.dump()}, str(tmp_path / "c.pth"))
    assert "PLUGIN_ELSEWHERE" not in load_config(None, checkpoint=str(tmp_path / "c.pth")).MODEL
