"""The shipped real annotation files (dataset/, in the repo): official query counts and clean-up counts.

Expected figures are those of the spec (MMN_SPEC.md, "Data"), and are also recomputed here from the raw
JSON with a plain loop, independently of mmn.data.annotations.
"""
import json
import logging
import os

import pytest

from mmn.data.annotations import load_annotations

from helpers.paths import DATASET_DIR

# name: (file, format, train-split query count or None, dropped, clamped)
CASES = {
    "charades_train": ("Charades_STA/charades_train.json", "charades", 12404, 0, 0),
    "charades_test": ("Charades_STA/charades_test.json", "charades", None, 0, 0),
    "activitynet_train": ("ActivityNet/train.json", "activitynet", 37417, 4, 29),
    "tacos_train": ("TACoS/train.json", "tacos", 9790, 0, 43),
    "tacos_test": ("TACoS/test.json", "tacos", None, 0, 5),
}


def path_of(relative):
    return os.path.join(DATASET_DIR, relative)


@pytest.fixture(scope="module")
def loaded():
    cache = {}

    def get(name):
        if name not in cache:
            relative, fmt = CASES[name][:2]
            cache[name] = load_annotations(path_of(relative), fmt)
        return cache[name]
    return get


def plain_counts(path, fmt):
    """Independent reference: (queries kept, dropped, clamped, outside) by a plain loop over the raw JSON."""
    with open(path) as f:
        raw = json.load(f)
    kept = dropped = outside = clamped = 0
    for entry in raw.values():
        if fmt == "tacos":
            duration = entry["num_frames"] / entry["fps"]
            stamps = [(s / entry["fps"], e / entry["fps"]) for s, e in entry["timestamps"]]
        else:
            duration, stamps = entry["duration"], entry["timestamps"]
        for start, end in stamps:
            if start >= end:
                dropped += 1
                continue
            if max(start, 0) >= min(end, duration):  # no overlap with the video: empty once clamped
                outside += 1
                continue
            kept += 1
            if start < -1e-6 or end > duration + 1e-6:
                clamped += 1
    return kept, dropped, clamped, outside


@pytest.mark.parametrize("name", sorted(CASES))
def test_counts_match_the_spec(name, loaded):
    relative, fmt, queries, dropped, clamped = CASES[name]
    videos, stats = loaded(name)
    if queries is not None:
        assert stats.queries == queries
    assert stats.queries == sum(len(v.sentences) for v in videos)
    assert stats.dropped == dropped
    assert stats.clamped == clamped
    assert len(stats.dropped_items) == dropped
    assert stats.outside == 0 and stats.outside_items == []  # no shipped pair lies wholly outside its video
    assert (stats.queries, stats.dropped, stats.clamped, stats.outside) == plain_counts(path_of(relative), fmt)


def test_tacos_clamped_in_total(loaded):
    assert loaded("tacos_train")[1].clamped + loaded("tacos_test")[1].clamped == 48


def test_every_moment_is_cleaned(loaded):
    for name in CASES:
        for video in loaded(name)[0]:
            assert len(video.moments) == len(video.sentences) > 0
            for start, end in video.moments:
                assert 0 <= start < end <= video.duration, (name, video.vid)


def test_activitynet_dropped_pairs_are_the_inverted_ones(loaded):
    with open(path_of(CASES["activitynet_train"][0])) as f:
        raw = json.load(f)
    _, stats = loaded("activitynet_train")
    for vid, k in stats.dropped_items:
        start, end = raw[vid]["timestamps"][k]
        assert start >= end, (vid, k)


def test_tacos_times_are_frames_over_fps(loaded):
    """One entry by hand: s17-d69.avi, 12438 frames at 29.4 fps, first pair [224, 358] frames."""
    videos, _ = loaded("tacos_train")
    video = next(v for v in videos if v.vid == "s17-d69.avi")
    assert video.duration == pytest.approx(12438 / 29.4)  # 423.06 s
    assert video.moments[0] == pytest.approx([224 / 29.4, 358 / 29.4])  # 7.619 s .. 12.177 s
    assert video.moments[1] == pytest.approx([418 / 29.4, 732 / 29.4])
    assert video.sentences[:2] == ["He took out a pan", "He took out an egg"]


def test_seconds_formats_are_not_rescaled(loaded):
    with open(path_of(CASES["charades_test"][0])) as f:
        vid, entry = next(iter(json.load(f).items()))
    video = next(v for v in loaded("charades_test")[0] if v.vid == vid)
    assert video.duration == entry["duration"]
    assert video.moments[0] == pytest.approx([max(entry["timestamps"][0][0], 0),
                                              min(entry["timestamps"][0][1], entry["duration"])])


def test_counts_are_logged(caplog):
    relative, fmt, queries, dropped, clamped = CASES["activitynet_train"]
    with caplog.at_level(logging.INFO, logger="mmn.data.annotations"):
        load_annotations(path_of(relative), fmt)
    records = [r.getMessage() for r in caplog.records if r.name == "mmn.data.annotations"]
    assert any(relative in m and str(queries) in m and f"dropped {dropped} " in m and f"clamped {clamped} " in m
               and "and 0 outside [0, duration]" in m for m in records), records
