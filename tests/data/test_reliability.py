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
    logger = logging.getLogger("mmn.data.annotations")
    logger.addHandler(caplog.handler)  # directly: setup_logger may have stopped "mmn" from propagating
    try:
        with caplog.at_level(logging.INFO, logger="mmn.data.annotations"):
            videos, stats = load_annotations(path, "charades")
    finally:
        logger.removeHandler(caplog.handler)
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


# --------------------------------------------------------------------------------------------- checkpoints

def tiny_model():
    import torch
    return torch.nn.Linear(2, 2)


def files_in(folder):
    return sorted(os.listdir(folder))


def make_temporary(folder, name, age_s=0.0):
    """A leftover of ``atomic_write`` for ``name``, last modified ``age_s`` seconds ago."""
    path = os.path.join(folder, f".tmp-{name}-abc123")
    with open(path, "wb") as f:
        f.write(b"\0" * 1024)
    stamp = time.time() - age_s
    os.utime(path, (stamp, stamp))
    return path


def test_temporary_file_atomic_write_leaves_on_a_kill_is_found_by_its_prefix(tmp_path):
    """The cleanup relies on atomic_write's naming: check the name a write in progress has."""
    from mmn.utils import checkpoint

    seen = []
    checkpoint.atomic_write(str(tmp_path / "model_1e.pth"), "wb", lambda f: seen.extend(files_in(tmp_path)))
    assert len(seen) == 1 and seen[0].startswith(checkpoint.temporary_prefix("model_1e.pth"))
    assert files_in(tmp_path) == ["model_1e.pth"]


def test_save_removes_stale_temporaries_and_keeps_live_ones(tmp_path):
    from mmn.utils.checkpoint import Checkpointer

    checkpointer = Checkpointer(str(tmp_path))
    same_name = make_temporary(tmp_path, "model_2e.pth")  # fresh, but its name is the one being written
    killed_earlier = make_temporary(tmp_path, "best_charades.pth", age_s=3600)  # older than this run
    killed_marker = make_temporary(tmp_path, "last_checkpoint")
    live = make_temporary(tmp_path, "results_test.json", age_s=-5)  # a concurrent writer, modified after our start
    checkpointer.save("model_2e.pth", tiny_model(), epoch=2, last=True)
    for path in (same_name, killed_earlier, killed_marker):
        assert not os.path.exists(path), path
    assert os.path.exists(live)
    assert files_in(tmp_path) == [os.path.basename(live), "last_checkpoint", "model_2e.pth"]


def test_keep_last_bounds_the_epoch_checkpoints_only(tmp_path):
    from mmn.config import load_config
    from mmn.utils.checkpoint import Checkpointer

    cfg = load_config(None, ["SOLVER.KEEP_LAST", "2", "OUTPUT_DIR", str(tmp_path)])
    checkpointer = Checkpointer(str(tmp_path), cfg)
    assert checkpointer.keep_last == 2
    model = tiny_model()
    for epoch in range(1, 6):
        if epoch == 2:
            checkpointer.save("best_charades.pth", model, epoch=epoch)
        checkpointer.save(f"model_{epoch}e.pth", model, epoch=epoch, last=True)
        assert len([f for f in files_in(tmp_path) if f.startswith("model_")]) == min(epoch, 2)
    assert files_in(tmp_path) == ["best_charades.pth", "last_checkpoint", "model_4e.pth", "model_5e.pth"]
    assert checkpointer.last_checkpoint() == str(tmp_path / "model_5e.pth")


def test_keep_last_leaves_newer_epochs_of_an_earlier_run_and_saves_without_last(tmp_path):
    from mmn.utils.checkpoint import Checkpointer

    model = tiny_model()
    earlier = Checkpointer(str(tmp_path))
    for epoch in (1, 2, 3, 9):
        earlier.save(f"model_{epoch}e.pth", model, epoch=epoch, last=True)
    resumed = Checkpointer(str(tmp_path), keep_last=1)
    resumed.save("model_4e.pth", model, epoch=4)  # not last=True: nothing pruned
    assert files_in(tmp_path) == ["last_checkpoint"] + [f"model_{e}e.pth" for e in (1, 2, 3, 4, 9)]
    resumed.save("model_4e.pth", model, epoch=4, last=True)
    assert files_in(tmp_path) == ["last_checkpoint", "model_4e.pth", "model_9e.pth"]


def test_keep_last_default_keeps_every_epoch(tmp_path):
    from mmn.config import load_config
    from mmn.utils.checkpoint import Checkpointer

    checkpointer = Checkpointer(str(tmp_path), load_config())
    assert checkpointer.keep_last == 0
    for epoch in range(1, 4):
        checkpointer.save(f"model_{epoch}e.pth", tiny_model(), epoch=epoch, last=True)
    assert files_in(tmp_path) == ["last_checkpoint", "model_1e.pth", "model_2e.pth", "model_3e.pth"]


def test_negative_keep_last_is_a_config_error(tmp_path):
    from mmn.config import load_config
    from mmn.config.loading import ConfigError
    from mmn.utils.checkpoint import Checkpointer

    with pytest.raises(ConfigError, match="SOLVER.KEEP_LAST"):
        Checkpointer(str(tmp_path), load_config(None, ["SOLVER.KEEP_LAST", "-1"]))
