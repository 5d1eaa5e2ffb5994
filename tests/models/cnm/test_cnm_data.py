"""CNM data: the dataset's items and collate, the builders from a config, and a training invariant of the data."""
import json

import h5py
import numpy as np
import pytest
import torch

from helpers.cnm import small_cfg
from mmn.engine import run_step
from mmn.data import get_entry, make_data_loader
from mmn.data.features import resample_clips
from mmn.modeling.cnm import CNM
from mmn.modeling.cnm.data import CNMCollator, CNMDataset, build_cnm_dataset, build_cnm_vocabulary
from mmn.modeling.cnm.text import CNMVocabulary, tokenize


# ---------------------------------------------------------------------------- data and training invariants
def make_data(tmp_path, seed=0, shuffle_timestamps=False):
    rng = np.random.RandomState(seed)
    sentences = ["a person opens the door.", "person sits on a chair", "the person eats food quickly",
                 "someone opens a red box", "a person puts the book on the shelf", "person runs to the door"]
    ann = {}
    with h5py.File(tmp_path / "feats.hdf5", "w") as f:
        for v in range(4):
            vid = f"v{v}"
            f[vid] = rng.randn(rng.randint(5, 40), 6).astype(np.float32)
            sents = [sentences[(v + k) % len(sentences)] for k in range(2 + v % 2)]
            stamps = [[float(k), float(k) + 3.0] for k in range(len(sents))]
            ann[vid] = {"duration": 30.0, "timestamps": stamps, "sentences": sents}
    if shuffle_timestamps:
        srng = np.random.RandomState(123)
        for entry in ann.values():
            entry["timestamps"] = [sorted(srng.uniform(0, 30, 2).tolist()) for _ in entry["timestamps"]]
    (tmp_path / "ann.json").write_text(json.dumps(ann))
    glove = {w: np.random.RandomState(len(w) * 7 + ord(w[0])).randn(8).astype(np.float32)
             for s in sentences for w in tokenize(s)}
    vocab = CNMVocabulary.from_sentences(sentences, glove, 12)
    return vocab


def train_tiny(tmp_path, shuffle_timestamps):
    vocab = make_data(tmp_path, shuffle_timestamps=shuffle_timestamps)
    ds = CNMDataset(str(tmp_path / "ann.json"), str(tmp_path / "feats.hdf5"), "charades", vocab,
                    num_frames=16, max_num_words=20, feat_key="", feat_dim=6, is_training=True)
    cfg = small_cfg(DROPOUT=0.1, TRANSFORMER_DROPOUT=0.1)
    cfg.SOLVER.BATCH_SIZE = 4
    cfg.DATALOADER.NUM_WORKERS = 0
    cfg.SEED = 3
    loader = make_data_loader(cfg, ds, is_train=True)
    torch.manual_seed(cfg.SEED)
    model = CNM(cfg)
    opt, _ = model.build_optimizer(cfg)
    seen_moments = []
    for epoch in range(2):
        loader.sampler.set_epoch(epoch)
        for batch in loader:
            seen_moments.append(batch.moments.clone())
            run_step(model, batch, opt)
    return model.state_dict(), torch.cat(seen_moments)


def test_shuffled_timestamps_give_identical_training(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    state_a, moments_a = train_tiny(tmp_path / "a", shuffle_timestamps=False)
    state_b, moments_b = train_tiny(tmp_path / "b", shuffle_timestamps=True)
    assert not torch.equal(moments_a, moments_b)  # the timestamps did differ in the batches
    for name in state_a:
        assert torch.equal(state_a[name], state_b[name]), name


def test_dataset_items_and_collate(tmp_path):
    vocab = make_data(tmp_path)
    ds = CNMDataset(str(tmp_path / "ann.json"), str(tmp_path / "feats.hdf5"), "charades", vocab,
                    num_frames=16, feat_key="", feat_dim=6)
    assert ds.num_queries == 10
    item = ds[0]
    with h5py.File(tmp_path / "feats.hdf5", "r") as f:
        raw = torch.from_numpy(f[ds.vids[0]][()])
    assert torch.equal(item["frames_feat"], resample_clips(raw, 16))  # resampled, NOT L2-normalised
    assert not torch.allclose(item["frames_feat"].norm(dim=1), torch.ones(16))
    ids, weights = vocab.encode(ds.sentences[0])
    assert item["words_id"].tolist() == ids
    batch = CNMCollator()([ds[0], ds[1], ds[2]])
    assert batch.words_feat.shape[1] == batch.words_id.shape[1] + 1
    n0 = int(batch.words_len[0])
    assert torch.equal(batch.words_feat[0, 1:n0 + 1], torch.from_numpy(vocab.vectors[ids]))
    assert torch.equal(batch.words_feat[0, 0], batch.words_feat[0, 1])  # placeholder = first word (release)
    expected = np.exp(np.asarray(weights, dtype=np.float64))
    assert np.allclose(batch.weights[0, :n0].numpy(), expected / expected.sum())
    assert batch.weights[0, n0:].abs().sum() == 0
    assert batch.frames_len.tolist() == [16, 16, 16]


def test_builders_from_config(tmp_path):
    make_data(tmp_path)
    (tmp_path / "Charades_STA").mkdir()
    (tmp_path / "ann.json").rename(tmp_path / "Charades_STA" / "charades_train.json")
    words = sorted({w for e in json.loads((tmp_path / "Charades_STA" / "charades_train.json").read_text()).values()
                    for s in e["sentences"] for w in tokenize(s)})
    (tmp_path / "glove.txt").write_text("".join(f"{w} " + " ".join(str(0.1 * i + j) for j in range(8)) + "\n"
                                                for i, w in enumerate(words) if w != "quickly"))
    cfg = small_cfg(VOCAB_SIZE=10, GLOVE="glove.txt", FEATURE_FILE="feats.hdf5", FEATURE_KEY="")
    cfg.DATASETS.ROOT = str(tmp_path)
    cfg.DATASETS.TRAIN = ("charades_train",)
    vocab = build_cnm_vocabulary(cfg)
    assert len(vocab) == 10 and "quickly" not in vocab.word_to_id and vocab.dim == 8
    ds = build_cnm_dataset(cfg, get_entry(cfg, "charades_train"), vocab, is_training=True)
    assert ds.num_queries == 10 and ds[0]["frames_feat"].shape == (16, 6)
    cfg.MODEL.CNM.VOCAB_SIZE = 500
    with pytest.raises(ValueError, match="VOCAB_SIZE"):
        build_cnm_vocabulary(cfg)
