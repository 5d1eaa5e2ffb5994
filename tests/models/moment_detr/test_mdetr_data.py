"""Moment-DETR's dataset and collate on generated QVHighlights-format data: TEF, span labels, saliency label
sampling (invariants and the official random call order), padding, the batch object, errors.

Faithfulness to the recorded official batches: tests/test_mdetr_data_parity.py (needs ../shared).
"""
import copy
import random

import numpy as np
import pytest
import torch

from helpers.qvh_data import record, sample_records, write_features, write_jsonl
from mmn.config.loading import ConfigError
from mmn.data.annotations import AnnotationError
from mmn.data.catalog import read_catalog_file
from mmn.data.features import FeatureError
from mmn.data.readers import NpzTextFolder, NpzVideoFolders
from mmn.modeling.moment_detr.data import (MomentDETRBatch, MomentDETRDataset, build_moment_detr_dataset,
                                           query_batch, saliency_labels, temporal_endpoint_features)


@pytest.fixture
def qvh(tmp_path):
    records = sample_records()
    ann = write_jsonl(str(tmp_path / "ann" / "train.jsonl"), records)
    # vidB has 74 / 75 rows: ctx_l 74 while its window ends at 150 s (span end 150 / 148 > 1)
    folders, text = write_features(str(tmp_path / "feats"), records, dims=(6, 4), text_dim=5,
                                   extra_rows={"vidA_0.0_150.0": [1, 0], "vidB_0.0_150.0": [-1, 0]})
    return {"records": records, "ann": ann, "folders": folders, "text": text, "root": tmp_path}


def make_dataset(qvh, ann=None, max_q_l=32, max_v_l=75, **kw):
    return MomentDETRDataset(ann or qvh["ann"], NpzVideoFolders(qvh["folders"], max_len=max_v_l),
                             NpzTextFolder(qvh["text"], max_len=max_q_l), **kw)


def test_item_is_video_features_with_tef_and_text_features(qvh):
    dataset = make_dataset(qvh, max_q_l=4)
    video = NpzVideoFolders(qvh["folders"], max_len=75)
    for index, raw in enumerate(qvh["records"]):
        item = dataset[index]
        features = video.read(raw["vid"])
        ctx_l = len(features)
        assert item["ctx_l"] == ctx_l and item["src_vid"].shape == (ctx_l, 12)
        assert torch.equal(item["src_vid"][:, :10], features)
        # TEF, computed independently in numpy float32
        start = np.arange(ctx_l, dtype=np.float32) / np.float32(ctx_l)
        np.testing.assert_array_equal(item["src_vid"][:, 10].numpy(), start)
        np.testing.assert_array_equal(item["src_vid"][:, 11].numpy(), start + np.float32(1.0 / ctx_l))
        assert torch.equal(item["src_txt"], NpzTextFolder(qvh["text"], max_len=4).read(raw["qid"]))
    assert [dataset[k]["ctx_l"] for k in range(5)] == [75, 74, 62, 75, 75]
    assert torch.equal(temporal_endpoint_features(3), torch.tensor([[0, 1 / 3], [1 / 3, 2 / 3], [2 / 3, 1.0]]))
    assert make_dataset(qvh, use_tef=False)[0]["src_vid"].shape == (75, 10)


def test_span_labels_are_center_width_over_the_loaded_clips(qvh):
    dataset = make_dataset(qvh)
    for index, ctx_l in ((1, 74), (2, 62)):
        windows = np.array(qvh["records"][index]["relevant_windows"], dtype=np.float64) / (ctx_l * 2.0)
        expected = np.stack([windows.mean(1), windows[:, 1] - windows[:, 0]], 1)
        spans = dataset[index]["span_labels"]
        assert spans.dtype == torch.float32
        np.testing.assert_allclose(spans.numpy(), expected, rtol=0, atol=1e-7)
    # vidB: 74 clips loaded, window [140, 150]: normalised by 148 s, so its end passes 1 (official quirk)
    center, width = dataset[1]["span_labels"][0].tolist()
    assert center + width / 2 > 1


def test_more_windows_than_max_windows_shuffles_the_records_list_in_place(qvh):
    dataset = make_dataset(qvh, max_windows=5)
    original = copy.deepcopy(qvh["records"][0]["relevant_windows"])
    random.seed(11)
    state = random.getstate()
    spans = dataset[0]["span_labels"]
    # replay the official calls from the same state: shuffle of the list, first five kept
    replay = copy.deepcopy(original)
    rng = random.Random()
    rng.setstate(state)
    rng.shuffle(replay)
    assert dataset.records[0].relevant_windows == replay != original  # the record's own list changed
    kept = torch.tensor(replay[:5], dtype=torch.float32) / 150.0
    assert torch.equal(spans, torch.stack([kept.sum(-1) * 0.5, kept[:, 1] - kept[:, 0]], -1))
    # the next epoch shuffles the already shuffled list
    dataset[0]
    assert sorted(dataset.records[0].relevant_windows) == sorted(original)


def test_saliency_labels_follow_the_official_random_calls(qvh):
    dataset = make_dataset(qvh)
    raw = qvh["records"][2]  # 2 windows (<= max_windows): no shuffle
    random.seed(5)
    state = random.getstate()
    item = dataset[2]
    rng = random.Random()
    rng.setstate(state)
    ctx_l, ids = item["ctx_l"], raw["relevant_clip_ids"]
    easy_pos = rng.sample(ids, k=1)
    easy_neg = rng.sample(list(set(range(ctx_l)) - set(ids)), k=1)
    assert item["saliency_pos"][1:] == easy_pos and item["saliency_neg"][1:] == easy_neg
    assert random.getstate() == rng.getstate()  # nothing else drawn


def test_saliency_label_invariants():
    rng = np.random.default_rng(0)
    for trial in range(300):
        ctx_l = int(rng.integers(3, 80))
        count = int(rng.integers(1, ctx_l + 3))
        ids = sorted(rng.choice(ctx_l + 2, size=min(count, ctx_l + 2), replace=False).tolist())
        scores = rng.integers(0, 5, size=(len(ids), 3)).tolist()
        sums = np.sum(scores, 1)
        before = random.getstate()
        pos, neg = saliency_labels(ids, scores, ctx_l)
        clamped = [min(c, ctx_l - 1) for c in ids]
        assert pos[0] in [c for c, s in zip(clamped, sums) if s == sums.max()]
        assert neg[0] in [c for c, s in zip(clamped, sums) if s == sums.min()]
        outside = set(range(ctx_l)) - set(ids)
        if outside:
            assert pos[1] in ids and neg[1] in outside  # the easy positive is not clamped
        else:  # no easy negative pool: copies of the hard labels, no random draw
            assert (pos[1], neg[1]) == (pos[0], neg[0]) and random.getstate() == before
    # the hard labels are numpy's argsort (default kind) picks
    scores = [[1, 1, 1], [4, 4, 4], [0, 0, 0], [4, 4, 4]]
    order = np.argsort(np.sum(np.array(scores), 1))
    pos, neg = saliency_labels([10, 11, 12, 13], scores, 20)
    assert (pos[0], neg[0]) == ([10, 11, 12, 13][order[-1]], 12)


def test_the_whole_video_relevant_gives_copies_of_the_hard_labels(qvh):
    item = make_dataset(qvh)[3]  # vidD: [0, 150] relevant, 75 clips
    assert item["saliency_pos"][1] == item["saliency_pos"][0] and item["saliency_neg"][1] == item["saliency_neg"][0]


def test_same_random_state_same_labels(qvh):
    dataset_a, dataset_b = make_dataset(qvh), make_dataset(qvh)
    random.seed(3)
    a = [dataset_a[k] for k in (4, 0, 2, 1, 3)]
    random.seed(3)
    b = [dataset_b[k] for k in (4, 0, 2, 1, 3)]
    for x, y in zip(a, b):
        assert torch.equal(x["span_labels"], y["span_labels"])
        assert (x["saliency_pos"], x["saliency_neg"]) == (y["saliency_pos"], y["saliency_neg"])


def test_collate_pads_to_the_longest_with_float_masks(qvh):
    dataset = make_dataset(qvh)
    random.seed(0)
    items = [dataset[k] for k in (2, 1, 0)]
    batch = dataset.collator()(items)
    assert isinstance(batch, MomentDETRBatch) and len(batch) == 3
    lengths_v = [it["src_vid"].shape[0] for it in items]
    lengths_t = [it["src_txt"].shape[0] for it in items]
    assert batch.src_vid.shape == (3, max(lengths_v), 12) and batch.src_txt.shape == (3, max(lengths_t), 5)
    for k, it in enumerate(items):
        assert torch.equal(batch.src_vid[k, :lengths_v[k]], it["src_vid"])
        assert not batch.src_vid[k, lengths_v[k]:].any() and not batch.src_txt[k, lengths_t[k]:].any()
        assert batch.src_vid_mask[k].tolist() == [1.0] * lengths_v[k] + [0.0] * (max(lengths_v) - lengths_v[k])
        assert batch.src_txt_mask[k].tolist() == [1.0] * lengths_t[k] + [0.0] * (max(lengths_t) - lengths_t[k])
        assert torch.equal(batch.span_labels[k], it["span_labels"])
    assert batch.src_vid_mask.dtype == torch.float32 and batch.saliency_pos_labels.dtype == torch.int64
    assert batch.saliency_pos_labels.tolist() == [it["saliency_pos"] for it in items]
    assert batch.saliency_neg_labels.shape == (3, 2)
    assert batch.query_indices.tolist() == [2, 1, 0] and batch.qids == [103, 102, 101]
    assert batch.vids == ["vidC_0.0_124.0", "vidB_0.0_150.0", "vidA_0.0_150.0"]
    assert batch.durations.dtype == torch.float64 and batch.durations.tolist() == [124.0, 150.0, 150.0]
    moved = batch.to(torch.device("cpu"))
    assert moved.qids == batch.qids and torch.equal(moved.span_labels[0], batch.span_labels[0])
    inputs, targets = batch.model_inputs(), batch.targets()
    assert set(inputs) == {"src_txt", "src_txt_mask", "src_vid", "src_vid_mask"}
    assert torch.equal(targets["span_labels"][1]["spans"], batch.span_labels[1])
    assert targets["saliency_neg_labels"] is batch.saliency_neg_labels


def test_test_split_has_no_labels(qvh, tmp_path):
    rows = [{k: r[k] for k in ("qid", "query", "duration", "vid")} for r in qvh["records"]]
    test_ann = write_jsonl(str(tmp_path / "ann" / "test.jsonl"), rows)
    dataset = make_dataset(qvh, ann=test_ann)
    assert not dataset.load_labels and "span_labels" not in dataset[0]
    batch = dataset.collator()([dataset[0], dataset[1]])
    assert batch.span_labels is None and batch.saliency_pos_labels is None and batch.targets() is None
    assert torch.isnan(dataset.query_moments()).all() and dataset.query_windows() == [None] * 5
    with pytest.raises(AnnotationError, match="test.jsonl: no labels"):
        make_dataset(qvh, ann=test_ann, load_labels=True)


def test_contract_views_per_query(qvh):
    dataset = make_dataset(qvh)
    assert dataset.num_queries == 5 and dataset.query_ids() == [101, 102, 103, 104, 105]
    assert dataset.query_moments().tolist() == [[4, 10], [140, 150], [0, 16], [0, 150], [90, 120]]
    assert dataset.query_durations().tolist() == [150, 150, 124, 150, 150]
    assert dataset.query_video_ids()[4] == "vidA_0.0_150.0"
    assert dataset.query_sentences()[0] == qvh["records"][0]["query"]
    assert len(dataset.query_windows()[0]) == 7


def test_missing_features_are_named_with_the_record_when_the_dataset_is_built(qvh):
    import os
    os.remove(os.path.join(qvh["folders"][0], "vidC_0.0_124.0.npz"))
    with pytest.raises(FeatureError) as err:
        make_dataset(qvh)
    message = str(err.value)
    assert qvh["folders"][0] in message and "'vidC_0.0_124.0'" in message and "train.jsonl line 3 qid 103" in message
    os.remove(os.path.join(qvh["text"], "qid105.npz"))
    dataset = make_dataset(qvh, check_features=False)
    with pytest.raises(FeatureError, match="qid105.npz.*line 5 qid 105"):
        dataset[4]


def test_build_from_a_catalog_entry(qvh):
    catalog = qvh["root"] / "catalog.yaml"
    catalog.write_text("m_train: {format: qvhighlights, ann_file: ann/train.jsonl, "
                       "video_feature_dirs: [feats/video_0, feats/video_1], text_feature_dir: feats/text}\n"
                       "m_test: {format: charades, ann_file: ann/train.jsonl, feat_file: f.h5}\n"
                       "m_val: {format: qvhighlights, ann_file: ann/train.jsonl, video_feature_dirs: [feats/video_0], "
                       "text_feature_dir: feats/text, clip_length: 1}\n")
    entries = read_catalog_file(str(catalog))
    dataset = build_moment_detr_dataset(entries["m_train"], max_q_l=3, max_v_l=70, v_feat_dim=10, t_feat_dim=5)
    item = dataset[2]
    assert item["src_vid"].shape == (62, 12) and item["src_txt"].shape == (3, 5) and dataset[0]["ctx_l"] == 70
    with pytest.raises(FeatureError, match="do not match MODEL.MOMENT_DETR.V_FEAT_DIM 12"):
        build_moment_detr_dataset(entries["m_train"], v_feat_dim=12, dim_keys=("MODEL.MOMENT_DETR.V_FEAT_DIM", None))
    with pytest.raises(ConfigError, match="'m_test' has format 'charades'"):
        build_moment_detr_dataset(entries["m_test"])
    with pytest.raises(ConfigError, match="clips of 1 s, the config asks for 2 s"):
        build_moment_detr_dataset(entries["m_val"], clip_length=2)
    assert build_moment_detr_dataset(entries["m_val"], check_features=False).clip_length == 1.0


def test_query_batch_for_prediction():
    video = torch.rand(7, 4)
    batch = query_batch(video, [torch.rand(3, 5), torch.rand(6, 5)], 14.0, qids=["a", "b"], vid="v")
    assert batch.src_vid.shape == (2, 7, 6) and torch.equal(batch.src_vid[1, :, :4], video)
    assert batch.src_txt_mask.tolist()[0] == [1, 1, 1, 0, 0, 0] and batch.targets() is None
    assert batch.qids == ["a", "b"] and batch.durations.tolist() == [14.0, 14.0]


def test_records_helper_matches_the_release_format():
    r = record(1, "v", [[2, 6], [10, 11]], duration=20)
    assert r["relevant_clip_ids"] == [1, 2, 5] and len(r["saliency_scores"]) == 3
