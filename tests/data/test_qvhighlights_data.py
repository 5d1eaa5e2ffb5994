"""QVHighlights data shared by every model: the jsonl adapter and its one-line errors, the feature readers
(official npz folders, text folder, HDF5) against an independent numpy computation, the catalog entries.

Runs on a fresh clone: records and features are generated (tests/helpers/qvh_data.py); the real annotation
files are only read when ../shared is present.
"""
import copy
import json
import math
import os

import h5py
import numpy as np
import pytest
import torch

from helpers.paths import SHARED_DIR
from helpers.qvh_data import sample_records, write_features, write_jsonl
from mmn.config.loading import ConfigError
from mmn.data.annotations import AnnotationError, annotation_formats, load_annotations
from mmn.data.catalog import builtin_entries, read_catalog_file
from mmn.data.features import FeatureError
from mmn.data.qvhighlights import load_qvhighlights
from mmn.data.readers import (HDF5VideoFeatures, NpzTextFolder, NpzVideoFolders, build_text_reader,
                              build_video_reader, l2_normalize_rows)

SHARED_QVH = os.path.join(SHARED_DIR, "data", "qvhighlights")


# ---------------------------------------------------------------------------- annotations
def test_records_are_read_as_written(tmp_path):
    records = sample_records()
    path = write_jsonl(str(tmp_path / "train.jsonl"), records)
    loaded = load_qvhighlights(path)
    assert [r.qid for r in loaded] == [r["qid"] for r in records]
    for ours, raw in zip(loaded, records):
        assert (ours.query, ours.duration, ours.vid) == (raw["query"], raw["duration"], raw["vid"])
        assert ours.relevant_windows == raw["relevant_windows"] and ours.relevant_clip_ids == raw["relevant_clip_ids"]
        assert ours.saliency_scores == raw["saliency_scores"] and ours.has_labels


def test_test_split_has_no_labels_and_gives_nan_moments(tmp_path):
    rows = [{k: r[k] for k in ("qid", "query", "duration", "vid")} for r in sample_records()]
    path = write_jsonl(str(tmp_path / "test.jsonl"), rows)
    loaded = load_qvhighlights(path)
    assert not any(r.has_labels for r in loaded) and loaded[0].relevant_windows is None
    videos, stats = load_annotations(path, "qvhighlights")
    assert stats.queries == len(rows) and all(math.isnan(x) for v in videos for m in v.moments for x in m)
    assert all(w is None for v in videos for w in v.windows)


def test_per_video_view_groups_queries_and_keeps_every_window(tmp_path):
    records = sample_records()
    videos, stats = load_annotations(write_jsonl(str(tmp_path / "a.jsonl"), records), "qvhighlights")
    assert "qvhighlights" in annotation_formats()
    assert (stats.videos, stats.queries) == (4, 5)
    first = videos[0]  # vidA: qids 101 and 105, in file order
    assert first.vid == "vidA_0.0_150.0" and first.qids == [101, 105]
    assert first.sentences == [records[0]["query"], records[4]["query"]]
    assert first.windows[0] == [[float(s), float(e)] for s, e in records[0]["relevant_windows"]]
    assert first.moments == [[4.0, 10.0], [90.0, 120.0]]  # the first window of each query
    assert [v.duration for v in videos] == [150.0, 150.0, 124.0, 150.0]


def _bad(mutate, qid=103):
    """The sample records with ``mutate`` applied to the record of ``qid``."""
    records = copy.deepcopy(sample_records())
    mutate(next(r for r in records if r["qid"] == qid))
    return records


BAD_RECORDS = {
    "window outside the video": (lambda r: r["relevant_windows"].append([120, 126]), "outside the video"),
    "window before the video": (lambda r: r["relevant_windows"].__setitem__(0, [-2, 16]), "outside the video"),
    "end < start": (lambda r: r["relevant_windows"].__setitem__(1, [60, 40]), "end <= start"),
    "saliency rows != clip ids": (lambda r: r["saliency_scores"].pop(), "rows for"),
    "clip id past the video": (lambda r: (r["relevant_clip_ids"].append(62), r["saliency_scores"].append([1, 1, 1])),
                               "past the video"),
    "missing vid": (lambda r: r.pop("vid"), "missing field(s) ['vid']"),
    "missing query": (lambda r: r.pop("query"), "missing field(s) ['query']"),
    "missing duration": (lambda r: r.pop("duration"), "missing field(s) ['duration']"),
    "missing relevant_windows": (lambda r: r.pop("relevant_windows"), "missing field(s) ['relevant_windows']"),
    "missing saliency_scores": (lambda r: r.pop("saliency_scores"), "missing field(s) ['saliency_scores']"),
    "two annotators": (lambda r: r["saliency_scores"].__setitem__(0, [1, 2]), "saliency row #0"),
    "score 5": (lambda r: r["saliency_scores"].__setitem__(2, [1, 5, 2]), "saliency row #2"),
    "duration 0": (lambda r: r.__setitem__("duration", 0), "'duration'"),
    "window not a pair": (lambda r: r["relevant_windows"].__setitem__(0, [3]), "relevant window #0"),
}


@pytest.mark.parametrize("case", sorted(BAD_RECORDS))
def test_bad_record_is_one_line_naming_the_file_and_the_qid(tmp_path, case):
    mutate, expected = BAD_RECORDS[case]
    path = write_jsonl(str(tmp_path / "ann.jsonl"), _bad(mutate))
    for load in (load_qvhighlights, lambda p: load_annotations(p, "qvhighlights")):
        with pytest.raises(AnnotationError) as err:
            load(path)
        message = str(err.value)
        assert "\n" not in message and path in message and "qid 103" in message and "line 3" in message, message
        assert expected in message, message


def test_malformed_json_line_names_the_line(tmp_path):
    path = tmp_path / "ann.jsonl"
    lines = [json.dumps(r) for r in sample_records()]
    lines[3] = lines[3][:-5]
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(AnnotationError, match=r"ann.jsonl: line 4: malformed JSON"):
        load_qvhighlights(str(path))


def test_duplicate_qid_and_mixed_labels_are_refused(tmp_path):
    records = sample_records()
    records[2]["qid"] = 101
    with pytest.raises(AnnotationError, match=r"line 3: qid 101 already used on line 1"):
        load_qvhighlights(write_jsonl(str(tmp_path / "dup.jsonl"), records))
    records = sample_records()
    for key in ("relevant_windows", "relevant_clip_ids", "saliency_scores"):
        del records[1][key]
    with pytest.raises(AnnotationError, match=r"line 2: qid 102 lacks the label fields"):
        load_qvhighlights(write_jsonl(str(tmp_path / "mixed.jsonl"), records))


def test_missing_file_and_empty_file(tmp_path):
    with pytest.raises(AnnotationError, match="not found"):
        load_qvhighlights(str(tmp_path / "absent.jsonl"))
    (tmp_path / "empty.jsonl").write_text("\n\n")
    with pytest.raises(AnnotationError, match="no query"):
        load_qvhighlights(str(tmp_path / "empty.jsonl"))


@pytest.mark.skipif(not os.path.isdir(SHARED_QVH), reason="../shared/data/qvhighlights not present")
def test_the_real_release_files_load():
    counts = {}
    for split in ("train", "val", "test"):
        records = load_qvhighlights(os.path.join(SHARED_QVH, f"highlight_{split}_release.jsonl"))
        counts[split] = (len(records), sum(r.has_labels for r in records))
    assert counts == {"train": (7218, 7218), "val": (1550, 1550), "test": (1542, 0)}


# ---------------------------------------------------------------------------- feature readers
def reference_video(folders, vid, max_len):
    """Independent numpy: per folder rows up to max_len, each divided by its float64 norm + 1e-5, folders cut
    to the shortest and concatenated."""
    parts = []
    for folder in folders:
        with np.load(os.path.join(folder, f"{vid}.npz")) as f:
            x = f["features"].astype(np.float64)[:max_len]
        parts.append(x / (np.sqrt((x ** 2).sum(axis=1, keepdims=True)) + 1e-5))
    rows = min(len(p) for p in parts)
    return np.concatenate([p[:rows] for p in parts], axis=1)


@pytest.fixture
def qvh_files(tmp_path):
    records = sample_records()
    ann = write_jsonl(str(tmp_path / "ann" / "train.jsonl"), records)
    # vidA: 76 / 75 rows (the shorter folder wins), vidB 76 / 76 (cut to max_len 75), vidC 62 / 62
    folders, text = write_features(str(tmp_path / "feats"), records, dims=(6, 4), text_dim=5,
                                   extra_rows={"vidA_0.0_150.0": [1, 0], "vidB_0.0_150.0": [1, 1]})
    return {"records": records, "ann": ann, "folders": folders, "text": text, "root": tmp_path}


def test_video_folders_match_an_independent_numpy_computation(qvh_files):
    reader = NpzVideoFolders(qvh_files["folders"], max_len=75)
    assert reader.check_videos([r["vid"] for r in qvh_files["records"]]) == [6, 4] and reader.feature_dim == 10
    lengths = {}
    for vid in {r["vid"] for r in qvh_files["records"]}:
        ours = reader.read(vid)
        assert ours.dtype == torch.float32
        expected = reference_video(qvh_files["folders"], vid, 75)
        assert ours.shape == expected.shape
        np.testing.assert_allclose(ours.numpy(), expected, rtol=0, atol=1e-6)
        lengths[vid] = len(ours)
    assert lengths == {"vidA_0.0_150.0": 75, "vidB_0.0_150.0": 75, "vidC_0.0_124.0": 62, "vidD_0.0_150.0": 75}
    # the folders' order is the concatenation order
    swapped = NpzVideoFolders(qvh_files["folders"][::-1], max_len=75).read("vidC_0.0_124.0")
    straight = reader.read("vidC_0.0_124.0")
    assert torch.equal(swapped, torch.cat([straight[:, 6:], straight[:, :6]], 1))
    # normalisation per folder: each folder's block of a row has norm ~1, the whole row ~sqrt(2)
    row = reader.read("vidA_0.0_150.0")[3]
    assert abs(row[:6].norm() - 1) < 1e-5 and abs(row[6:].norm() - 1) < 1e-5


def test_normalisation_adds_eps_to_the_norm_like_the_official_not_f_normalize():
    x = np.array([[0.0, 0.0], [6e-6, 8e-6], [3.0, 4.0]], dtype=np.float32)
    y = l2_normalize_rows(x)
    assert y.dtype == np.float32
    np.testing.assert_array_equal(y[0], [0, 0])
    np.testing.assert_allclose(y[1], [0.3, 0.4], rtol=1e-6)     # norm 1e-5 + 1e-5: F.normalize would give 0.6, 0.8
    np.testing.assert_allclose(y[2], np.array([3, 4]) / (5 + 1e-5), rtol=1e-7)
    np.testing.assert_array_equal(y, x / (np.linalg.norm(x, axis=-1, keepdims=True) + np.float32(1e-5)))


def test_no_normalisation_and_no_cut(qvh_files):
    reader = NpzVideoFolders(qvh_files["folders"], normalize=False)
    with np.load(os.path.join(qvh_files["folders"][0], "vidB_0.0_150.0.npz")) as f:
        raw = f["features"]
    ours = reader.read("vidB_0.0_150.0")
    assert len(ours) == 76 and np.array_equal(ours[:, :6].numpy(), raw)


def test_text_folder_cuts_and_normalises(qvh_files):
    reader = NpzTextFolder(qvh_files["text"], max_len=4)
    reader.check_queries([r["qid"] for r in qvh_files["records"]])
    with np.load(os.path.join(qvh_files["text"], "qid101.npz")) as f:
        raw = f["last_hidden_state"].astype(np.float64)
    ours = reader.read(101)
    assert raw.shape[0] > 4 and ours.shape == (4, 5)
    np.testing.assert_allclose(ours.numpy(), raw[:4] / (np.sqrt((raw[:4] ** 2).sum(1, keepdims=True)) + 1e-5),
                               rtol=0, atol=1e-6)


def test_hdf5_layout_reads_like_one_npz_folder(qvh_files, tmp_path):
    path = str(tmp_path / "feats.hdf5")
    with h5py.File(path, "w") as f:
        for vid in {r["vid"] for r in qvh_files["records"]}:
            with np.load(os.path.join(qvh_files["folders"][0], f"{vid}.npz")) as z:
                f[vid] = z["features"]
    hdf5 = HDF5VideoFeatures(path, max_len=75)
    hdf5.check_videos(["vidA_0.0_150.0", "vidB_0.0_150.0"])
    npz = NpzVideoFolders(qvh_files["folders"][:1], max_len=75)
    for vid in ("vidA_0.0_150.0", "vidB_0.0_150.0"):
        assert torch.equal(hdf5.read(vid), npz.read(vid))
    with pytest.raises(FeatureError) as err:
        hdf5.check_videos(["vidA_0.0_150.0", "nope"], owners={"nope": "ann.jsonl qid 7"})
    assert path in str(err.value) and "'nope'" in str(err.value) and "qid 7" in str(err.value)


def test_missing_feature_files_name_the_folder_the_id_and_the_record(qvh_files):
    folders = qvh_files["folders"]
    os.remove(os.path.join(folders[1], "vidC_0.0_124.0.npz"))
    reader = NpzVideoFolders(folders, max_len=75)
    vids = [r["vid"] for r in qvh_files["records"]]
    owners = {"vidC_0.0_124.0": "train.jsonl line 3 qid 103"}
    with pytest.raises(FeatureError) as err:
        reader.check_videos(vids, owners)
    message = str(err.value)
    assert folders[1] in message and "'vidC_0.0_124.0'" in message and "qid 103" in message and "\n" not in message
    with pytest.raises(FeatureError) as err:
        reader.read("vidC_0.0_124.0", owner="train.jsonl line 3 qid 103")
    assert folders[1] in str(err.value) and "vidC_0.0_124.0.npz" in str(err.value) and "qid 103" in str(err.value)
    os.remove(os.path.join(qvh_files["text"], "qid104.npz"))
    with pytest.raises(FeatureError) as err:
        NpzTextFolder(qvh_files["text"]).check_queries([101, 104], {104: "train.jsonl line 4 qid 104"})
    assert qvh_files["text"] in str(err.value) and "104" in str(err.value) and "line 4 qid 104" in str(err.value)


def test_bad_feature_files_are_refused_without_unpickling(qvh_files):
    folder = qvh_files["folders"][0]
    np.savez(os.path.join(folder, "vidA_0.0_150.0.npz"), feats=np.zeros((3, 6), np.float32))  # wrong key
    np.savez(os.path.join(folder, "vidB_0.0_150.0.npz"), features=np.array([{"a": 1}, None], dtype=object))
    np.savez(os.path.join(folder, "vidC_0.0_124.0.npz"), features=np.zeros((3, 7), np.float32))  # another size
    reader = NpzVideoFolders([folder])
    with pytest.raises(FeatureError, match="no array 'features'"):
        reader.read("vidA_0.0_150.0")
    with pytest.raises(FeatureError, match="no array 'features'.*qid 1"):
        reader.check_videos(["vidA_0.0_150.0"], {"vidA_0.0_150.0": "x qid 1"})
    with pytest.raises(FeatureError, match="vidB_0.0_150.0.npz"):
        reader.read("vidB_0.0_150.0")  # an object array: np.load(allow_pickle=False) refuses it
    with pytest.raises(FeatureError, match="array of numbers"):
        reader.check_videos(["vidB_0.0_150.0"])
    with pytest.raises(FeatureError, match="different feature sizes"):
        reader.check_videos(["vidC_0.0_124.0", "vidD_0.0_150.0"])
    with pytest.raises(FeatureError, match=r"6 \(video_0\) \+ 4 \(video_1\) = 10 do not match MODEL.X.V_FEAT_DIM 12"):
        NpzVideoFolders(qvh_files["folders"], feat_dim=12, dim_key="MODEL.X.V_FEAT_DIM").check_videos(
            ["vidD_0.0_150.0"])


# ---------------------------------------------------------------------------- catalog
def test_builtin_qvhighlights_entries_follow_the_official_release_layout():
    entries = builtin_entries("root")
    for split in ("train", "val", "test"):
        e = entries[f"qvhighlights_{split}"]
        assert e.format == "qvhighlights" and e.dataset == "qvhighlights" and e.clip_length == 2.0
        assert e.ann_file == os.path.join("root", "QVHighlights", f"highlight_{split}_release.jsonl")
        assert e.video_feature_dirs == (os.path.join("root", "QVHighlights", "features", "slowfast_features"),
                                        os.path.join("root", "QVHighlights", "features", "clip_features"))
        assert e.text_feature_dir == os.path.join("root", "QVHighlights", "features", "clip_text_features")
        assert e.feat_file == "" and e.iou_thresholds == (0.5, 0.7)
    assert entries["charades_test"].video_feature_dirs == () and entries["charades_test"].clip_length is None


def test_catalog_file_declares_feature_folders(qvh_files):
    catalog = qvh_files["root"] / "catalog.yaml"
    catalog.write_text("mine_train: {format: qvhighlights, ann_file: ann/train.jsonl, "
                       "video_feature_dirs: [feats/video_0, feats/video_1], text_feature_dir: feats/text, "
                       "clip_length: 2}\n"
                       "mine_test: {format: qvhighlights, ann_file: ann/train.jsonl, feat_file: f.hdf5}\n")
    entries = read_catalog_file(str(catalog))
    entry = entries["mine_train"]
    assert entry.video_feature_dirs == tuple(qvh_files["folders"]) and entry.text_feature_dir == qvh_files["text"]
    assert entry.clip_length == 2.0 and entry.feat_file == "" and entry.dataset == "mine"
    assert entries["mine_test"].feat_file == str(qvh_files["root"] / "f.hdf5")
    assert entries["mine_test"].video_feature_dirs == () and entries["mine_test"].clip_length is None
    assert isinstance(build_video_reader(entry), NpzVideoFolders)
    assert isinstance(build_video_reader(entries["mine_test"]), HDF5VideoFeatures)
    assert torch.equal(build_text_reader(entry, max_len=3).read(102),
                       NpzTextFolder(qvh_files["text"], max_len=3).read(102))
    with pytest.raises(ConfigError, match="mine_test.*no text_feature_dir"):
        build_text_reader(entries["mine_test"])


@pytest.mark.parametrize("fields, named", [
    ("feat_file: f.h5, video_feature_dirs: [a]", "exactly one of feat_file"),
    ("text_feature_dir: t", "exactly one of feat_file"),
    ("video_feature_dirs: a", "video_feature_dirs must be a non-empty list"),
    ("video_feature_dirs: []", "video_feature_dirs must be a non-empty list"),
    ("video_feature_dirs: [a], clip_length: 0", "clip_length must be"),
    ("video_feature_dirs: [a], clip_length: two", "clip_length must be"),
    ("video_feature_dirs: [a], text_feature_dirs: t", "unknown field(s) ['text_feature_dirs']"),
])
def test_catalog_feature_field_mistakes_name_the_file_and_the_entry(tmp_path, fields, named):
    catalog = tmp_path / "catalog.yaml"
    catalog.write_text(f"q_train: {{format: qvhighlights, ann_file: a.jsonl, {fields}}}\n")
    with pytest.raises(ConfigError) as err:
        read_catalog_file(str(catalog))
    assert str(catalog) in str(err.value) and "'q_train'" in str(err.value) and named in str(err.value)
