"""Bad inputs fail early with an error naming the file and the item (video id, config key)."""
import json

import h5py
import numpy as np
import pytest

from mmn.config.loading import ConfigError, load_config
from mmn.data import AnnotationError, FeatureError
from mmn.modeling.mmn.data import MMNDataset
from mmn.data.annotations import load_annotations

NUM_PRE_CLIPS = 16
FEAT_DIM = 64
GOOD = {"duration": 30.0, "timestamps": [[1.0, 5.0], [10.0, 20.0]],
        "sentences": ["person sits down in a chair.", "a person opens the door."]}


@pytest.fixture(scope="module")
def tokenizer(parity_text_encoder_dir):
    from mmn.modeling.mmn.tokenization import load_tokenizer
    return load_tokenizer(parity_text_encoder_dir)


def write_json(path, data):
    path.write_text(json.dumps(data))
    return str(path)


def write_features(path, videos, key=None):
    with h5py.File(path, "w") as f:
        for vid, array in videos.items():
            (f.create_group(vid) if key else f).create_dataset(key or vid, data=array)
    return str(path)


def features(rows=10, dim=FEAT_DIM, seed=0):
    return np.random.default_rng(seed).standard_normal((rows, dim)).astype(np.float32)


def entry(**changes):
    data = json.loads(json.dumps(GOOD))
    data.update(changes)
    return data


def assert_names(err, *items):
    message = str(err.value)
    for item in items:
        assert str(item) in message, f"{item!r} not named in: {message}"


# --------------------------------------------------------------------------------------------- annotations

def test_good_files_load(tmp_path, tokenizer):
    """Control: the helpers make a valid dataset, so the failures below come from the one bad item."""
    ann = write_json(tmp_path / "ok.json", {"vidA": GOOD, "vidB": GOOD})
    feats = write_features(tmp_path / "ok.hdf5", {"vidA": features(), "vidB": features(3)})
    dataset = MMNDataset(ann, feats, "charades", NUM_PRE_CLIPS, tokenizer, feat_dim=FEAT_DIM)
    assert len(dataset) == 2 and dataset[1]["feats"].shape == (NUM_PRE_CLIPS, FEAT_DIM)


def test_malformed_json(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('{"vidA": {"duration": 30.0,, "timestamps": []}')
    with pytest.raises(AnnotationError) as err:
        load_annotations(str(path), "charades")
    assert_names(err, path, "malformed JSON", "line 1")


def test_missing_annotation_file(tmp_path):
    path = tmp_path / "absent.json"
    with pytest.raises(AnnotationError) as err:
        load_annotations(str(path), "charades")
    assert_names(err, path)


@pytest.mark.parametrize("field", ["duration", "timestamps", "sentences"])
def test_missing_field(tmp_path, field):
    bad = entry()
    del bad[field]
    path = write_json(tmp_path / "ann.json", {"vidA": GOOD, "vidBad": bad})
    with pytest.raises(AnnotationError) as err:
        load_annotations(path, "charades")
    assert_names(err, path, "vidBad", field)


@pytest.mark.parametrize("field", ["fps", "num_frames"])
def test_tacos_missing_field(tmp_path, field):
    good = {"num_frames": 900, "fps": 30.0, "timestamps": [[30, 150]], "sentences": ["he took out a pan"]}
    bad = dict(good)
    del bad[field]
    path = write_json(tmp_path / "tacos.json", {"s13-d21.avi": good, "s22-d55.avi": bad})
    with pytest.raises(AnnotationError) as err:
        load_annotations(path, "tacos")
    assert_names(err, path, "s22-d55.avi", field)


@pytest.mark.parametrize("fmt", ["charades", "tacos"])
@pytest.mark.parametrize("pair", [["1.0", 5.0], [1.0, None], [1.0], [1.0, 2.0, 3.0], 7, [True, 4.0],
                                  [1.0, float("nan")]])
def test_non_numeric_timestamps(tmp_path, fmt, pair):
    if fmt == "tacos":
        bad = {"num_frames": 900, "fps": 30.0, "timestamps": [[30, 150], pair], "sentences": ["a", "b"]}
    else:
        bad = entry(timestamps=[[1.0, 5.0], pair])
    path = tmp_path / "ann.json"
    path.write_text(json.dumps({"vidBad": bad}))  # NaN is written as the (non-standard) token NaN
    with pytest.raises(AnnotationError) as err:
        load_annotations(str(path), fmt)
    assert_names(err, path, "vidBad", "timestamp #1")


@pytest.mark.parametrize("value", ["30", None, float("inf"), -3.0, 0])
def test_bad_duration(tmp_path, value):
    path = tmp_path / "ann.json"
    path.write_text(json.dumps({"vidBad": entry(duration=value)}))
    with pytest.raises(AnnotationError) as err:
        load_annotations(str(path), "charades")
    assert_names(err, path, "vidBad", "duration")


@pytest.mark.parametrize("fps", [0, -25.0, "30"])
def test_tacos_bad_fps(tmp_path, fps):
    bad = {"num_frames": 900, "fps": fps, "timestamps": [[30, 150]], "sentences": ["he took out a pan"]}
    path = write_json(tmp_path / "tacos.json", {"vidBad": bad})
    with pytest.raises(AnnotationError) as err:
        load_annotations(path, "tacos")
    assert_names(err, path, "vidBad", "fps")


@pytest.mark.parametrize("sentence", ["", "   ", "\n"])
def test_empty_sentence(tmp_path, sentence):
    path = write_json(tmp_path / "ann.json", {"vidA": GOOD, "vidBad": entry(sentences=["fine.", sentence])})
    with pytest.raises(AnnotationError) as err:
        load_annotations(path, "charades")
    assert_names(err, path, "vidBad", "sentence #1", "empty")


def test_non_string_sentence(tmp_path):
    path = write_json(tmp_path / "ann.json", {"vidBad": entry(sentences=["fine.", 42])})
    with pytest.raises(AnnotationError) as err:
        load_annotations(path, "charades")
    assert_names(err, path, "vidBad", "sentence #1", "42")


def test_sentence_count_mismatch(tmp_path):
    path = write_json(tmp_path / "ann.json", {"vidBad": entry(sentences=["only one."])})
    with pytest.raises(AnnotationError) as err:
        load_annotations(path, "charades")
    assert_names(err, path, "vidBad")


def test_video_left_without_valid_sentence(tmp_path):
    bad = entry(timestamps=[[5.0, 5.0], [9.0, 2.0]])  # start >= end: both dropped
    path = write_json(tmp_path / "ann.json", {"vidA": GOOD, "vidBad": bad})
    with pytest.raises(AnnotationError) as err:
        load_annotations(path, "charades")
    assert_names(err, path, "vidBad", "no valid sentence")


def test_partially_invalid_video_keeps_its_valid_sentences(tmp_path):
    """Control for the test above: one start >= end pair is dropped, not an error."""
    path = write_json(tmp_path / "ann.json", {"vidA": entry(timestamps=[[5.0, 5.0], [2.0, 9.0]])})
    videos, stats = load_annotations(path, "charades")
    assert stats.dropped == 1 and videos[0].sentences == [GOOD["sentences"][1]]


@pytest.mark.parametrize("data", [[], {}, {"vidBad": [1, 2]}])
def test_wrong_top_level_structure(tmp_path, data):
    path = write_json(tmp_path / "ann.json", data)
    with pytest.raises(AnnotationError) as err:
        load_annotations(path, "charades")
    assert_names(err, path)
    if isinstance(data, dict) and data:
        assert_names(err, "vidBad")


def test_unknown_format(tmp_path):
    path = write_json(tmp_path / "ann.json", {"vidA": GOOD})
    with pytest.raises(AnnotationError) as err:
        load_annotations(path, "kinetics")
    assert_names(err, path, "kinetics")


def test_sentence_longer_than_the_text_encoder(tmp_path, tokenizer):
    long_sentence = " ".join(["person"] * (tokenizer.model_max_length + 5))
    ann = write_json(tmp_path / "ann.json", {"vidA": GOOD, "vidLong": entry(sentences=["ok.", long_sentence])})
    feats = write_features(tmp_path / "f.hdf5", {"vidA": features(), "vidLong": features()})
    with pytest.raises(AnnotationError) as err:
        MMNDataset(ann, feats, "charades", NUM_PRE_CLIPS, tokenizer, feat_dim=FEAT_DIM)
    assert_names(err, ann, "vidLong", str(tokenizer.model_max_length))


# --------------------------------------------------------------------------------------------- features

def test_video_absent_from_hdf5_fails_at_build(tmp_path, tokenizer):
    ann = write_json(tmp_path / "ann.json", {"vidA": GOOD, "vidMissing": GOOD})
    feats = write_features(tmp_path / "f.hdf5", {"vidA": features(), "vidOther": features()})
    with pytest.raises(FeatureError) as err:
        MMNDataset(ann, feats, "charades", NUM_PRE_CLIPS, tokenizer, feat_dim=FEAT_DIM)
    assert_names(err, feats, "vidMissing")
    assert "'vidA'" not in str(err.value)


def test_activitynet_layout_missing_c3d_features(tmp_path, tokenizer):
    ann = write_json(tmp_path / "ann.json", {"v_a": GOOD})
    feats = write_features(tmp_path / "flat.hdf5", {"v_a": features()})  # Charades layout, no c3d_features group
    with pytest.raises(FeatureError) as err:
        MMNDataset(ann, feats, "activitynet", NUM_PRE_CLIPS, tokenizer, feat_dim=FEAT_DIM, feat_key="c3d_features")
    assert_names(err, feats, "v_a", "c3d_features")


def test_group_where_features_expected(tmp_path, tokenizer):
    ann = write_json(tmp_path / "ann.json", {"v_a": GOOD})
    feats = write_features(tmp_path / "anet.hdf5", {"v_a": features()}, key="c3d_features")  # ActivityNet layout
    with pytest.raises(FeatureError) as err:
        MMNDataset(ann, feats, "charades", NUM_PRE_CLIPS, tokenizer, feat_dim=FEAT_DIM)
    assert_names(err, feats, "v_a", "group")
    # and the same file read with the right format works
    dataset = MMNDataset(ann, feats, "activitynet", NUM_PRE_CLIPS, tokenizer, feat_dim=FEAT_DIM, feat_key="c3d_features")
    assert dataset[0]["feats"].shape == (NUM_PRE_CLIPS, FEAT_DIM)


def test_missing_feature_file(tmp_path, tokenizer):
    ann = write_json(tmp_path / "ann.json", {"vidA": GOOD})
    feats = str(tmp_path / "absent.hdf5")
    with pytest.raises(FeatureError) as err:
        MMNDataset(ann, feats, "charades", NUM_PRE_CLIPS, tokenizer, feat_dim=FEAT_DIM)
    assert_names(err, feats)


def test_feature_dimension_mismatch_fails_at_build(tmp_path, tokenizer):
    """Found from the HDF5 metadata when the dataset is built, not at the first read of the video."""
    ann = write_json(tmp_path / "ann.json", {"vidA": GOOD, "vidWide": GOOD})
    feats = write_features(tmp_path / "f.hdf5", {"vidA": features(), "vidWide": features(dim=FEAT_DIM + 1)})
    with pytest.raises(FeatureError) as err:
        MMNDataset(ann, feats, "charades", NUM_PRE_CLIPS, tokenizer, feat_dim=FEAT_DIM)
    assert_names(err, feats, "vidWide", (10, FEAT_DIM + 1), FEAT_DIM)
    assert "'vidA'" not in str(err.value)


def test_feature_dimension_mismatch_at_read_without_the_build_check(tmp_path, tokenizer):
    ann = write_json(tmp_path / "ann.json", {"vidA": GOOD, "vidWide": GOOD})
    feats = write_features(tmp_path / "f.hdf5", {"vidA": features(), "vidWide": features(dim=FEAT_DIM + 1)})
    dataset = MMNDataset(ann, feats, "charades", NUM_PRE_CLIPS, tokenizer, feat_dim=FEAT_DIM, check_features=False)
    dataset[0]
    with pytest.raises(FeatureError) as err:
        dataset[1]
    assert_names(err, feats, "vidWide", (10, FEAT_DIM + 1), FEAT_DIM)


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_non_finite_features(tmp_path, tokenizer, value):
    bad = features()
    bad[3, 7] = value
    ann = write_json(tmp_path / "ann.json", {"vidA": GOOD, "vidNaN": GOOD})
    feats = write_features(tmp_path / "f.hdf5", {"vidA": features(), "vidNaN": bad})
    dataset = MMNDataset(ann, feats, "charades", NUM_PRE_CLIPS, tokenizer, feat_dim=FEAT_DIM)
    with pytest.raises(FeatureError) as err:
        dataset[1]
    assert_names(err, feats, "vidNaN", "NaN or Inf")


@pytest.mark.parametrize("shape", [(0, FEAT_DIM), (FEAT_DIM,), (2, 10, FEAT_DIM)])
def test_empty_or_wrong_rank_features_fail_at_build(tmp_path, tokenizer, shape):
    ann = write_json(tmp_path / "ann.json", {"vidA": GOOD, "vidBad": GOOD})
    feats = write_features(tmp_path / "f.hdf5", {"vidA": features(), "vidBad": np.zeros(shape, np.float32)})
    with pytest.raises(FeatureError) as err:
        MMNDataset(ann, feats, "charades", NUM_PRE_CLIPS, tokenizer, feat_dim=FEAT_DIM)
    assert_names(err, feats, "vidBad", "shape", shape)
    # the same check guards a read when the build-time check is off
    dataset = MMNDataset(ann, feats, "charades", NUM_PRE_CLIPS, tokenizer, feat_dim=FEAT_DIM, check_features=False)
    with pytest.raises(FeatureError) as err:
        dataset[1]
    assert_names(err, feats, "vidBad", "shape", shape)


# --------------------------------------------------------------------------------------------- config

def test_unknown_key_in_yaml(tmp_path):
    path = tmp_path / "cfg.yaml"
    path.write_text("SOLVER:\n  LR: 0.001\nMODEL:\n  MMN:\n    NUM_CLIPZ: 16\n")
    with pytest.raises(ConfigError) as err:
        load_config(str(path))
    assert_names(err, path, "MODEL.MMN.NUM_CLIPZ")


def test_unknown_key_on_command_line():
    with pytest.raises(ConfigError) as err:
        load_config(None, ["SOLVER.LR", "0.001", "SOLVER.MAX_EPOCHS", "3"])
    assert_names(err, "command line", "SOLVER.MAX_EPOCHS")


def test_wrong_type_on_command_line():
    with pytest.raises(ConfigError) as err:
        load_config(None, ["SOLVER.LR", "fast"])
    assert_names(err, "SOLVER.LR", "fast")


def test_odd_override_count():
    with pytest.raises(ConfigError) as err:
        load_config(None, ["SOLVER.LR"])
    assert_names(err, "SOLVER.LR")


def test_valid_overrides_apply(tmp_path):
    """Control: a known key in both places is accepted and applied, the command line last."""
    path = tmp_path / "cfg.yaml"
    path.write_text("SOLVER:\n  LR: 0.001\n  MAX_EPOCH: 3\n")
    cfg = load_config(str(path), ["SOLVER.LR", "0.5"])
    assert cfg.SOLVER.LR == 0.5 and cfg.SOLVER.MAX_EPOCH == 3


def test_malformed_yaml_and_missing_config_name_the_file(tmp_path):
    from mmn.config import load_config
    from mmn.config.loading import ConfigError

    bad = tmp_path / "bad.yaml"
    bad.write_text("MODEL:\n  MMN: [unclosed\n")
    with pytest.raises(ConfigError, match="bad.yaml: malformed YAML"):
        load_config(str(bad))
    with pytest.raises(ConfigError, match="nope.yaml: config file not found"):
        load_config(str(tmp_path / "nope.yaml"))


def test_text_encoder_that_cannot_be_loaded_names_the_path_and_the_key(tmp_path):
    from mmn.modeling.mmn.tokenization import TextEncoderLoadError, load_tokenizer
    from mmn.modeling.mmn.text_encoder import load_pretrained_encoder

    missing = str(tmp_path / "no_such_encoder")
    for load, what in ((load_tokenizer, "tokenizer"), (load_pretrained_encoder, "text encoder")):
        with pytest.raises(TextEncoderLoadError, match="MODEL.MMN.TEXT_ENCODER.PRETRAINED") as err:
            load(missing)
        assert f"{what} {missing!r}" in str(err.value)
