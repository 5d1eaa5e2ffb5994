"""Reliability: feature shapes checked from the HDF5 metadata, moments wholly outside the video dropped,
stale temporary checkpoints removed and SOLVER.KEEP_LAST, the MMNError hierarchy and MODEL.DEVICE."""
import os
import time

import h5py
import numpy as np
import pytest

from mmn.data.features import FeatureError, HDF5FeatureReader

FEAT_DIM = 8
DIM_KEY = "MODEL.MMN.FEATPOOL.INPUT_SIZE"


def write_h5(path, arrays, key=None):
    with h5py.File(path, "w") as f:
        for vid, array in arrays.items():
            (f.create_group(vid) if key else f).create_dataset(key or vid, data=array)
    return str(path)


def good(rows=5, dim=FEAT_DIM):
    return np.ones((rows, dim), np.float32)


# --------------------------------------------------------------------------------------------- features

def test_check_videos_names_file_first_videos_dimension_and_key(tmp_path):
    arrays = {f"ok{i}": good() for i in range(3)}
    arrays.update({f"wide{i}": good(dim=FEAT_DIM + 2) for i in range(7)})
    path = write_h5(tmp_path / "f.hdf5", arrays)
    reader = HDF5FeatureReader(path, feat_dim=FEAT_DIM, dim_key=DIM_KEY)
    with pytest.raises(FeatureError) as err:
        reader.check_videos(sorted(arrays))
    message = str(err.value)
    assert path in message and f"{DIM_KEY} {FEAT_DIM}" in message and "7 video(s)" in message
    assert all(f"'wide{i}'" in message for i in range(5)) and "'wide5'" not in message  # the first five
    assert "'ok0'" not in message and f"(5, {FEAT_DIM + 2})" in message


def test_check_videos_without_dim_key_still_names_the_expected_dimension(tmp_path):
    path = write_h5(tmp_path / "f.hdf5", {"v": good(dim=3)})
    with pytest.raises(FeatureError) as err:
        HDF5FeatureReader(path, feat_dim=FEAT_DIM).check_videos(["v"])
    assert f"expected {FEAT_DIM}" in str(err.value) and "'v'" in str(err.value)


@pytest.mark.parametrize("array", [np.zeros((0, FEAT_DIM), np.float32), np.zeros(FEAT_DIM, np.float32),
                                   np.zeros((2, 3, FEAT_DIM), np.float32), np.array(b"text")],
                         ids=["no-rows", "1-d", "3-d", "string"])
def test_check_videos_rejects_arrays_that_are_not_clip_features(tmp_path, array):
    path = write_h5(tmp_path / "f.hdf5", {"good": good(), "bad": array})
    reader = HDF5FeatureReader(path, feat_dim=FEAT_DIM)
    reader.check_videos(["good"])
    with pytest.raises(FeatureError) as err:
        reader.check_videos(["good", "bad"])
    assert path in str(err.value) and "'bad'" in str(err.value) and "shape" in str(err.value)


def test_check_videos_sees_the_activitynet_layout(tmp_path):
    path = write_h5(tmp_path / "anet.hdf5", {"v_a": good(), "v_b": good(dim=4)}, key="c3d_features")
    reader = HDF5FeatureReader(path, key="c3d_features", feat_dim=FEAT_DIM, dim_key=DIM_KEY)
    reader.check_videos(["v_a"])
    with pytest.raises(FeatureError) as err:
        reader.check_videos(["v_a", "v_b"])
    assert "'v_b'" in str(err.value) and "c3d_features" in str(err.value)


def test_check_videos_reads_metadata_only(tmp_path, monkeypatch):
    """No data is read: NaN passes the build-time check (it is found at read time), and a check of
    many videos is fast."""
    bad = good()
    bad[1, 2] = np.nan
    arrays = {f"v{i}": good() for i in range(2000)}
    arrays["nan"] = bad
    path = write_h5(tmp_path / "f.hdf5", arrays)
    reader = HDF5FeatureReader(path, feat_dim=FEAT_DIM)

    def no_data_read(*args, **kwargs):
        raise AssertionError("check_videos read feature data")
    monkeypatch.setattr(h5py.Dataset, "__getitem__", no_data_read)
    start = time.perf_counter()
    reader.check_videos(list(arrays))
    assert time.perf_counter() - start < 5.0  # ~0.15 s; Charades' ~10k videos take under a second
    monkeypatch.undo()
    with pytest.raises(FeatureError, match="NaN or Inf"):
        reader.read("nan")


def test_read_names_dim_key_for_a_video_the_build_did_not_check(tmp_path):
    path = write_h5(tmp_path / "f.hdf5", {"v": good(dim=3)})
    with pytest.raises(FeatureError) as err:
        HDF5FeatureReader(path, feat_dim=FEAT_DIM, dim_key="MODEL.CNM.FRAME_DIM").read("v")
    assert "MODEL.CNM.FRAME_DIM 8" in str(err.value) and "(5, 3)" in str(err.value)


# --------------------------------------------------------------------------------------------- annotations

def write_annotations(path, entries):
    import json
    path.write_text(json.dumps(entries))
    return str(path)


def test_pairs_wholly_outside_the_video_are_dropped_and_counted(tmp_path, caplog):
    """[-5, -1] and [d + 5, d + 10] used to be clamped into the inverted targets [0, -1] and [d + 5, d]."""
    import logging

    from mmn.data.annotations import load_annotations

    sentences = ["before the video.", "inside.", "after the video.", "ends at the start.", "overlaps the end.",
                 "inverted."]
    path = write_annotations(tmp_path / "ann.json", {"v": {
        "duration": 30.0,
        "timestamps": [[-5, -1], [2, 6], [35, 40], [-3, 0], [28, 33], [9, 4]],
        "sentences": sentences}})
    with caplog.at_level(logging.INFO, logger="mmn.data.annotations"):
        videos, stats = load_annotations(path, "charades")
    assert videos[0].moments == [[2, 6], [28, 30.0]]
    assert videos[0].sentences == ["inside.", "overlaps the end."]
    assert (stats.queries, stats.dropped, stats.outside, stats.clamped) == (2, 1, 3, 1)
    assert stats.outside_items == [("v", 0), ("v", 2), ("v", 3)] and stats.dropped_items == [("v", 5)]
    assert any("dropped 1 pairs with start >= end and 3 outside [0, duration]" in r.getMessage()
               for r in caplog.records), [r.getMessage() for r in caplog.records]


def test_tacos_frames_outside_the_video_are_dropped(tmp_path):
    from mmn.data.annotations import load_annotations

    path = write_annotations(tmp_path / "tacos.json", {"s1.avi": {
        "fps": 10.0, "num_frames": 100, "timestamps": [[120, 150], [10, 20]], "sentences": ["late.", "ok."]}})
    videos, stats = load_annotations(path, "tacos")
    assert videos[0].moments == [[1.0, 2.0]] and stats.outside == 1


def test_video_with_only_outside_pairs_is_an_error_naming_it(tmp_path):
    from mmn.data.annotations import AnnotationError, load_annotations

    path = write_annotations(tmp_path / "ann.json", {
        "ok": {"duration": 10.0, "timestamps": [[1, 2]], "sentences": ["fine."]},
        "gone": {"duration": 10.0, "timestamps": [[12, 15]], "sentences": ["after the end."]}})
    with pytest.raises(AnnotationError) as err:
        load_annotations(path, "charades")
    assert path in str(err.value) and "'gone'" in str(err.value) and "outside" in str(err.value)
