"""mmn-extract: video files -> HDF5 clip features (mmn.video), on videos and a CLIP model the tests make.

The videos are written with PyAV (moving shapes, known frame times): a constant-rate one of an odd
duration and a variable-frame-rate one. The encoder is a tiny randomly initialised CLIP vision model +
projection and its image processor, saved with save_pretrained and loaded back through from_pretrained
(the code path of a real checkpoint). Nothing is downloaded.
"""
import json
import os
import shutil
import subprocess
import sys

import h5py
import numpy as np
import pytest
import torch

av = pytest.importorskip("av")

from mmn.video import decode, extract  # noqa: E402
from mmn.video.decode import SampledVideo, VideoDecodeError, num_samples  # noqa: E402
from mmn.video.encoder import ImageEncoderLoadError, load_image_encoder  # noqa: E402
from mmn.video.extract import ExtractionInputError, collect_videos, extract_videos  # noqa: E402
from mmn.video.synthetic import (constant_rate_times, save_random_clip, variable_rate_times, write_video,  # noqa: E402
                                 write_without_video_frames)

from helpers.paths import REPO_ROOT as ROOT
torch.set_num_threads(1)  # a shared 2-core machine
ENV = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false",
           HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")

CFR_DURATION, CFR_RATE = 5.3, 10   # 53 frames at 0.1 s: an odd duration (not a multiple of 1 / fps)
VFR_RATE = 25                      # the nominal rate of the variable-rate video (its last frame lasts 1 / 25 s)


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    """The videos (with their stored frame times) and the tiny CLIP directory."""
    root = tmp_path_factory.mktemp("video")
    videos = root / "videos"
    videos.mkdir()
    cfr = str(videos / "cfr_odd.mp4")
    vfr = str(videos / "vfr.mkv")
    cfr_times = write_video(cfr, constant_rate_times(CFR_DURATION, CFR_RATE), rate=CFR_RATE)
    vfr_times = write_video(vfr, variable_rate_times(4.7, seed=3), rate=VFR_RATE)
    clip = save_random_clip(str(root / "tiny_clip"), "tiny")
    return {"root": root, "folder": str(videos), "cfr": cfr, "vfr": vfr, "cfr_times": cfr_times,
            "vfr_times": vfr_times, "clip": clip}


@pytest.fixture(scope="module")
def encoder(media):
    return load_image_encoder(media["clip"], device="cpu", batch_size=2)


def shown_frame_times(frame_times, duration, fps):
    """The test's own sampling rule: row k shows the last frame that starts at or before k / fps."""
    rows = int(np.ceil(duration * fps - 1e-6))
    out = []
    for k in range(rows):
        before = [t for t in frame_times if t <= k / fps + 1e-9]
        out.append(before[-1] if before else frame_times[0])
    return out


def run_cli(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "mmn.video", "--no-progress", *args], cwd=ROOT, env=ENV,
                          capture_output=True, text=True, timeout=timeout)


# ------------------------------------------------------------------------------------------------ decoding
@pytest.mark.parametrize("fps", [0.5, 2.0, 3.0])
def test_constant_rate_rows_and_timestamps_match_duration_times_fps(media, fps):
    video = SampledVideo(media["cfr"], fps)
    frames = list(video)
    assert video.duration == pytest.approx(CFR_DURATION, abs=1e-3)
    assert len(frames) == num_samples(CFR_DURATION, fps) == int(np.ceil(CFR_DURATION * fps))
    assert video.timestamps == pytest.approx(shown_frame_times(media["cfr_times"], CFR_DURATION, fps), abs=1e-6)
    # on a 10 fps grid every sample time k / fps has a frame starting exactly there (3 fps: within 0.1 s)
    assert all(0 <= k / fps - t < 1 / CFR_RATE + 1e-6 for k, t in enumerate(video.timestamps))
    assert all(rgb.shape == (48, 64, 3) and rgb.dtype == np.uint8 for _, rgb in frames)


@pytest.mark.parametrize("fps", [0.5, 2.0])
def test_variable_rate_rows_use_the_stream_timestamps(media, fps):
    times = media["vfr_times"]
    gaps = np.diff(times)
    assert gaps.min() < 0.05 and gaps.max() > 0.2, "the fixture should really have a variable frame rate"
    video = SampledVideo(media["vfr"], fps)
    list(video)
    duration = times[-1] + 1 / VFR_RATE
    assert video.duration == pytest.approx(duration, abs=1e-3)
    assert len(video.timestamps) == int(np.ceil(duration * fps))
    # an assumed constant rate (frame index / nominal rate) would give other times
    assert video.timestamps == pytest.approx(shown_frame_times(times, duration, fps), abs=1e-6)
    assert video.decode_frames == len(times)


def test_time_base_rounding_of_the_duration_adds_no_row(tmp_path):
    """mp4 re-times a ms-timed 30 fps stream in 1/16000 ticks: 10 s become 10.0003 s, still 5 rows at 0.5 fps."""
    path = str(tmp_path / "ten_seconds.mp4")
    write_video(path, constant_rate_times(10.0, 30), rate=30)
    video = SampledVideo(path, 0.5)
    list(video)
    assert 10.0 < video.duration < 10.001
    assert video.timestamps == pytest.approx([0.0, 2.0, 4.0, 6.0, 8.0], abs=1e-3)


@pytest.mark.parametrize("degrees", [90, -90, 180])
def test_a_phone_video_stored_sideways_is_turned_upright(tmp_path, degrees):
    from mmn.video.synthetic import frame_image

    path = str(tmp_path / "phone.mp4")
    write_video(path, constant_rate_times(1.0, 10), rate=10, display_rotation=degrees)
    (_, shown), = list(SampledVideo(path, 1.0))
    want = np.rot90(frame_image(0, 64, 48), degrees // 90)  # what a player shows: the pixels turned
    assert shown.shape == want.shape
    assert np.abs(shown.astype(int) - want).mean() < 12  # mpeg4 is lossy; a wrong turn is far off (> 50)
    assert shown.flags["C_CONTIGUOUS"]


def test_a_file_that_is_not_a_video_is_an_error_naming_it(tmp_path):
    bad = tmp_path / "notes.mp4"
    bad.write_text("this is not a video")
    with pytest.raises(VideoDecodeError, match="notes.mp4: cannot open as a video"):
        list(SampledVideo(str(bad), 0.5))


def test_videos_without_frames_or_without_a_video_stream_are_errors_naming_them(tmp_path):
    write_without_video_frames(str(tmp_path / "no_frames.mkv"))
    write_without_video_frames(str(tmp_path / "sound_only.mkv"), with_video_stream=False)
    with pytest.raises(VideoDecodeError, match="no_frames.mkv: holds no decodable frame"):
        list(SampledVideo(str(tmp_path / "no_frames.mkv"), 0.5))
    with pytest.raises(VideoDecodeError, match="sound_only.mkv: has no video stream"):
        list(SampledVideo(str(tmp_path / "sound_only.mkv"), 0.5))


# ------------------------------------------------------------------------------------------------ features
def test_features_equal_a_direct_transformers_forward_on_independently_decoded_frames(media, encoder, tmp_path):
    from transformers import CLIPImageProcessor, CLIPVisionModelWithProjection

    out = str(tmp_path / "feats.hdf5")
    fps = 2.0
    summary = extract_videos([("cfr_odd", media["cfr"]), ("vfr", media["vfr"])], out, encoder, fps, progress=False)
    assert summary.extracted == ["cfr_odd", "vfr"] and not summary.failed
    model = CLIPVisionModelWithProjection.from_pretrained(media["clip"]).eval()
    processor = CLIPImageProcessor.from_pretrained(media["clip"])
    with h5py.File(out, "r") as f:
        for vid, path, times in (("cfr_odd", media["cfr"], media["cfr_times"]), ("vfr", media["vfr"], media["vfr_times"])):
            feats, attrs = f[vid][()], dict(f[vid].attrs)
            # decode every frame independently of mmn.video, and pick the rows' frames by the test's own rule
            with av.open(path) as container:
                decoded = {round(float(fr.time), 6): fr.to_ndarray(format="rgb24")
                           for fr in container.decode(video=0)}
            duration = times[-1] + 1 / (CFR_RATE if vid == "cfr_odd" else VFR_RATE)
            picked = [decoded[round(t, 6)] for t in shown_frame_times(times, duration, fps)]
            with torch.no_grad():
                pixels = processor(images=picked, return_tensors="pt")["pixel_values"]
                want = model(pixel_values=pixels).image_embeds.numpy()
            assert feats.dtype == np.float32 and feats.shape == (int(np.ceil(duration * fps)), 16)
            assert np.abs(feats - want).max() <= 1e-5, vid
            assert attrs["duration"] == pytest.approx(duration, abs=1e-3)
            assert attrs["fps"] == fps and attrs["encoder"] == media["clip"]
            np.testing.assert_allclose(attrs["timestamps"], shown_frame_times(times, duration, fps), atol=1e-6)


def test_full_clip_checkpoint_gives_its_vision_tower_and_projection(tmp_path, media):
    """The default encoder (openai/clip-vit-base-patch32) is a whole CLIPModel checkpoint (text + vision):
    the vision model + projection are read out of it under their own names."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    from mmn.video.synthetic import TINY

    torch.manual_seed(1)
    # vision_config without projection_dim (its default, 512, is saved with it): the top-level 16 is the one
    vision = {k: v for k, v in TINY.items() if k != "projection_dim"}
    clip = CLIPModel(CLIPConfig(vision_config=vision, projection_dim=16,
                                text_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                                 num_attention_heads=2, vocab_size=99)))
    clip.save_pretrained(str(tmp_path))
    CLIPImageProcessor.from_pretrained(media["clip"]).save_pretrained(str(tmp_path))
    enc = load_image_encoder(str(tmp_path), device="cpu")
    frames = [rgb for _, rgb in SampledVideo(media["cfr"], 1.0)]
    with torch.no_grad():
        pixels = enc.processor(images=frames, return_tensors="pt")["pixel_values"]
        want = clip.visual_projection(clip.vision_model(pixel_values=pixels).pooler_output).numpy()
    np.testing.assert_allclose(enc.encode(frames), want, atol=1e-5)


def test_a_checkpoint_without_the_projection_is_refused_not_randomly_completed(tmp_path, media):
    from transformers import CLIPVisionModel

    CLIPVisionModel.from_pretrained(media["clip"]).save_pretrained(str(tmp_path))  # vision tower only
    with pytest.raises(ImageEncoderLoadError, match="visual_projection.weight.*would be random"):
        load_image_encoder(str(tmp_path), device="cpu")


def test_bf16_autocast_features_are_close_to_fp32(media):
    frames = [rgb for _, rgb in SampledVideo(media["vfr"], 2.0)]
    fp32 = load_image_encoder(media["clip"], device="cpu").encode(frames)
    bf16 = load_image_encoder(media["clip"], device="cpu", dtype="bf16").encode(frames)
    assert bf16.dtype == np.float32 and bf16.shape == fp32.shape
    cosine = (fp32 * bf16).sum(1) / np.linalg.norm(fp32, axis=1) / np.linalg.norm(bf16, axis=1)
    assert cosine.min() > 0.98
    assert not np.array_equal(fp32, bf16), "bf16 should really run in bf16"


def test_an_encoder_that_cannot_be_loaded_says_how_to_work_offline(tmp_path):
    with pytest.raises(ImageEncoderLoadError, match="no_such_clip.*local from_pretrained directory"):
        load_image_encoder(str(tmp_path / "no_such_clip"), device="cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_asking_for_cuda_without_cuda_is_a_clear_error(media):
    with pytest.raises(ImageEncoderLoadError, match="CUDA is not available"):
        load_image_encoder(media["clip"], device="cuda")


# ------------------------------------------------------------------------------------------------ writer
def test_resume_skips_finished_videos_and_keeps_them_unchanged(media, encoder, tmp_path, monkeypatch):
    out = str(tmp_path / "feats.hdf5")
    first = extract_videos([("cfr_odd", media["cfr"])], out, encoder, 0.5, progress=False)
    assert first.extracted == ["cfr_odd"]
    with h5py.File(out, "r") as f:
        before = f["cfr_odd"][()]
    opened = []
    real = extract.SampledVideo

    def spy(path, fps):
        opened.append(os.path.basename(path))
        return real(path, fps)

    monkeypatch.setattr(extract, "SampledVideo", spy)
    second = extract_videos([("cfr_odd", media["cfr"]), ("vfr", media["vfr"])], out, encoder, 0.5, progress=False)
    assert second.skipped == ["cfr_odd"] and second.extracted == ["vfr"]
    assert opened == ["vfr.mkv"], "a finished video must not even be decoded again"
    with h5py.File(out, "r") as f:
        np.testing.assert_array_equal(f["cfr_odd"][()], before)
        assert sorted(f.keys()) == ["cfr_odd", "vfr"]
    assert second.durations == pytest.approx({"cfr_odd": CFR_DURATION, "vfr": media["vfr_times"][-1] + 1 / VFR_RATE},
                                             abs=1e-3)


class _Interrupt(BaseException):
    """Stands for a kill (Ctrl-C, OOM) in the middle of a video."""


def test_an_interrupted_video_leaves_no_entry_and_the_next_run_completes_it(media, encoder, tmp_path, monkeypatch):
    out = str(tmp_path / "feats.hdf5")
    real_move = h5py.Group.move

    def killed_before_the_rename_of_vfr(self, source, dest):
        if dest == "vfr":  # vfr's data and attributes are in the file, under the temporary name only
            raise _Interrupt()
        return real_move(self, source, dest)

    monkeypatch.setattr(h5py.Group, "move", killed_before_the_rename_of_vfr)
    with pytest.raises(_Interrupt):
        extract_videos([("cfr_odd", media["cfr"]), ("vfr", media["vfr"])], out, encoder, 0.5, progress=False)
    with h5py.File(out, "r") as f:
        assert "cfr_odd" in f and "vfr" not in f
    monkeypatch.setattr(h5py.Group, "move", real_move)
    extract_videos([("cfr_odd", media["cfr"])], out, encoder, 0.5, progress=False)  # a run without vfr
    with h5py.File(out, "r") as f:
        assert list(f.keys()) == ["cfr_odd"], "the next run must remove what the interrupted one left"
    again = extract_videos([("cfr_odd", media["cfr"]), ("vfr", media["vfr"])], out, encoder, 0.5, progress=False)
    assert again.skipped == ["cfr_odd"] and again.extracted == ["vfr"]
    with h5py.File(out, "r") as f:
        assert sorted(f.keys()) == ["cfr_odd", "vfr"], "the temporary entry must be gone"
        assert f["vfr"].shape[0] == int(np.ceil((media["vfr_times"][-1] + 1 / VFR_RATE) * 0.5))


def test_the_hdf5_is_read_by_the_framework_reader(media, encoder, tmp_path):
    from mmn.data.features import HDF5FeatureReader

    out = str(tmp_path / "feats.hdf5")
    extract_videos([("cfr_odd", media["cfr"])], out, encoder, 0.5, progress=False)
    reader = HDF5FeatureReader(out, key=None, feat_dim=16)
    reader.check_videos(["cfr_odd"])
    assert tuple(reader.read("cfr_odd").shape) == (3, 16)
    reader.close()


# ------------------------------------------------------------------------------------------------ CLI
@pytest.mark.slow
def test_cli_reports_corrupt_and_empty_videos_by_name_and_extracts_the_others(media, tmp_path):
    folder = tmp_path / "videos"
    shutil.copytree(media["folder"], folder)
    (folder / "broken.mp4").write_bytes(open(media["cfr"], "rb").read()[:600])  # truncated: header only
    (folder / "empty.mkv").write_bytes(b"")
    write_without_video_frames(str(folder / "no_frames.mkv"))
    out = tmp_path / "feats.hdf5"
    proc = run_cli(str(folder), "--out", str(out), "--encoder", media["clip"], "--fps", "1", "--device", "cpu")
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "5 video(s): 2 extracted, 0 already in the output, 3 failed" in proc.stdout
    assert "FAILED broken:" in proc.stdout and "broken.mp4" in proc.stdout
    assert "FAILED empty:" in proc.stdout and "empty.mkv" in proc.stdout
    assert "FAILED no_frames:" in proc.stdout and "no_frames.mkv: holds no decodable frame" in proc.stdout
    with h5py.File(out, "r") as f:
        assert sorted(f.keys()) == ["cfr_odd", "vfr"]
    durations = json.loads((tmp_path / "feats.durations.json").read_text())
    assert sorted(durations) == ["cfr_odd", "vfr"]
    assert durations["cfr_odd"] == pytest.approx(CFR_DURATION, abs=1e-3)

    # the same command again: the good videos are skipped, the bad files fail again
    proc = run_cli(str(folder), "--out", str(out), "--encoder", media["clip"], "--fps", "1", "--device", "cpu",
                   "--annotation-skeleton", str(tmp_path / "ann" / "all.json"))  # ann/ does not exist yet
    assert proc.returncode == 1
    assert "5 video(s): 0 extracted, 2 already in the output, 3 failed" in proc.stdout
    skeleton = json.loads((tmp_path / "ann" / "all.json").read_text())
    assert skeleton["vfr"] == {"duration": round(durations["vfr"], 3), "timestamps": [], "sentences": []}


@pytest.mark.slow
def test_cli_refuses_to_mix_extractors_in_one_file(media, tmp_path):
    out = tmp_path / "feats.hdf5"
    assert run_cli(media["cfr"], "--out", str(out), "--encoder", media["clip"], "--fps", "0.5").returncode == 0
    # the same encoder directory given by a relative path is the same extractor
    relative = os.path.relpath(media["clip"], ROOT)
    proc = run_cli(media["vfr"], "--out", str(out), "--encoder", relative, "--fps", "0.5")
    assert proc.returncode == 0 and "1 extracted" in proc.stdout, proc.stderr[-2000:]
    other = tmp_path / "other.mp4"
    shutil.copy(media["vfr"], other)
    proc = run_cli(str(other), "--out", str(out), "--encoder", media["clip"], "--fps", "1")
    assert proc.returncode == 2
    assert str(out) in proc.stderr and "fps 0.5" in proc.stderr
    with h5py.File(out, "r") as f:
        assert sorted(f.keys()) == ["cfr_odd", "vfr"]


def test_inputs_from_folders_list_files_and_files(media, tmp_path):
    listing = tmp_path / "videos.txt"
    listing.write_text(f"# my videos\n{os.path.relpath(media['vfr'], tmp_path)}\n\n")
    got = collect_videos([media["folder"], str(listing), media["cfr"]])
    assert got == [("cfr_odd", media["cfr"]), ("vfr", media["folder"] + "/vfr.mkv")]
    other = tmp_path / "other"
    other.mkdir()
    shutil.copy(media["vfr"], other / "vfr.mp4")
    with pytest.raises(ExtractionInputError, match="'vfr'.*two inputs"):
        collect_videos([media["folder"], str(other / "vfr.mp4")])
    with pytest.raises(ExtractionInputError, match="missing.mp4: no such file"):
        collect_videos([str(tmp_path / "missing.mp4")])
    listing.write_text("gone.mp4\n")
    with pytest.raises(ExtractionInputError, match="videos.txt: listed video .*gone.mp4"):
        collect_videos([str(listing)])


def test_num_samples_counts_partial_last_clip():
    assert decode.num_samples(5.3, 0.5) == 3   # 0, 2, 4 s
    assert decode.num_samples(4.0, 0.5) == 2   # 0, 2 s: the clip [4, 4) would be empty
    assert decode.num_samples(0.2, 0.5) == 1   # a very short video still has one row
    assert decode.num_samples(4.01, 0.5) == 3  # a last clip of 10 ms counts


def test_the_console_script_names_the_cli(media, monkeypatch, capsys):
    """setup.py's mmn-extract entry point resolves to the CLI (the installed script may point elsewhere)."""
    import importlib
    import re

    with open(os.path.join(ROOT, "setup.py")) as f:
        target = re.search(r'"mmn-extract\s*=\s*([\w.]+):(\w+)"', f.read())
    assert target, "setup.py declares no mmn-extract console script"
    script = getattr(importlib.import_module(target.group(1)), target.group(2))
    monkeypatch.setattr(sys, "argv", ["mmn-extract", "--help"])
    with pytest.raises(SystemExit) as exit_info:
        script()
    assert exit_info.value.code == 0 and "--encoder" in capsys.readouterr().out
    # an unusable input is one line naming it, exit status 2 (main's MMNError convention)
    monkeypatch.setattr(sys, "argv", ["mmn-extract", "no_such_video.mp4", "--out", "x.hdf5"])
    with pytest.raises(SystemExit) as exit_info:
        script()
    assert exit_info.value.code == 2
    assert "mmn-extract: error: no_such_video.mp4: no such file or folder" in capsys.readouterr().err


@pytest.mark.slow
def test_the_extraction_benchmark_runs(tmp_path):
    """A smoke run of python -m benchmarks.extract on a tiny encoder (its figures are not checked)."""
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, "-m", "benchmarks.extract", "--videos", "1", "--duration", "3",
                           "--size", "64x48", "--rate", "10", "--codec", "mpeg4", "--fps", "2", "--encoder", "tiny",
                           "--out", str(out)], cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["rows"] == 6 and result["decoded_frames"] == 30
    assert "frames/s" in proc.stdout and "decode" in proc.stdout


def test_the_annotation_skeleton_keeps_filled_entries_and_adds_new_videos(tmp_path):
    ann = tmp_path / "all.json"
    filled = {"duration": 5.3, "timestamps": [[0.0, 2.5]], "sentences": ["a square moves right"]}
    ann.write_text(json.dumps({"cfr_odd": filled}))
    assert extract.write_annotation_skeleton(str(ann), {"cfr_odd": 5.3, "vfr": 4.4213}) == 1
    got = json.loads(ann.read_text())
    assert got == {"cfr_odd": filled, "vfr": {"duration": 4.421, "timestamps": [], "sentences": []}}
    ann.write_text("{not json")
    with pytest.raises(ExtractionInputError, match="all.json: existing annotation file is not valid JSON"):
        extract.write_annotation_skeleton(str(ann), {"vfr": 4.4})
