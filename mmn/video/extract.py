"""``mmn-extract``: video files -> one HDF5 file of clip features in the framework's layout.

    mmn-extract videos/ more.mp4 list.txt --out feats.hdf5 [--encoder NAME_OR_PATH] [--fps 0.5] [--device cuda]

Layout of the output (what ``mmn.data.features.HDF5FeatureReader`` reads, with ``f[vid]`` directly):

* ``f[video_id]``: float32 ``(T, D)``, row k = the image feature of the frame shown at ``k / fps`` seconds
  (``mmn.video.decode``); its attributes: ``duration`` (s), ``fps``, ``timestamps`` (s, one per row: the
  shown frame's presentation time), ``source`` (the video path), ``encoder``.
* file attributes ``encoder``, ``fps``, ``feature_dim``: appending with another extractor is refused,
  so one file never mixes features of two encoders or rates.
* beside it, ``<out stem>.durations.json``: ``{video_id: duration_s}`` of every video in the file (what
  the annotation files need), rewritten at the end of every run.

The video id is the file stem. Resumable: videos already in the output are skipped. Each video is encoded
whole in memory, then written under a temporary name and renamed (``h5py`` move) and the file flushed,
so an interrupted run leaves no partial entry under a video id (the temporary group is removed at the
next start). A video that cannot be decoded or holds no frame is reported by name and skipped; the
others continue; the exit status is 1 when any failed.
"""
import argparse
import json
import logging
import os
import sys
import time
from dataclasses import dataclass, field

import numpy as np

from ..utils.errors import MMNError, run_cli
from .decode import SampledVideo, VideoDecodeError
from .encoder import DEFAULT_ENCODER, DTYPES, load_image_encoder

logger = logging.getLogger("mmn.video")

VIDEO_EXTENSIONS = (".mp4", ".mkv", ".webm", ".avi", ".mov", ".m4v", ".mpg", ".mpeg", ".flv", ".wmv",
                    ".3gp", ".ts", ".ogv")
LIST_EXTENSIONS = (".txt", ".lst", ".list")
PARTIAL_GROUP = ".mmn_partial"  # where a video's entry is written before it is renamed to its id
LAYOUT_ATTRS = ("encoder", "fps", "feature_dim")


class ExtractionInputError(MMNError, ValueError):
    """Inputs or an output file that cannot be used; the message names the path."""


# ------------------------------------------------------------------------------------------------
# inputs
# ------------------------------------------------------------------------------------------------
def _read_list_file(path):
    """Paths listed one per line (relative to the list file's folder); blank lines and # comments skipped."""
    base = os.path.dirname(os.path.abspath(path))
    with open(path, encoding="utf-8") as f:
        lines = [line.strip() for line in f]
    return [os.path.join(base, line) for line in lines if line and not line.startswith("#")]


def collect_videos(inputs):
    """``[(video_id, path)]`` from video files, folders of them (not recursive) and list files.

    The id is the file stem; two inputs with the same stem, or an input that does not exist, are errors.
    """
    videos = {}

    def add(path):
        vid = os.path.splitext(os.path.basename(path))[0]
        if not vid or vid.startswith(PARTIAL_GROUP):
            raise ExtractionInputError(f"{path}: cannot use {vid!r} as a video id")
        if vid in videos:
            if os.path.abspath(videos[vid]) == os.path.abspath(path):
                return  # the same file given twice (e.g. in a folder and a list): once is enough
            raise ExtractionInputError(f"video id {vid!r} (the file stem) is used by two inputs: {videos[vid]} and "
                                       f"{path}; rename one")
        videos[vid] = path

    for item in inputs:
        if os.path.isdir(item):
            names = sorted(n for n in os.listdir(item) if n.lower().endswith(VIDEO_EXTENSIONS))
            if not names:
                logger.warning("%s: no video files (%s)", item, " ".join(VIDEO_EXTENSIONS))
            for name in names:
                add(os.path.join(item, name))
        elif os.path.isfile(item) and item.lower().endswith(LIST_EXTENSIONS):
            for path in _read_list_file(item):
                if not os.path.isfile(path):
                    raise ExtractionInputError(f"{item}: listed video {path} does not exist")
                add(path)
        elif os.path.isfile(item):
            add(item)
        else:
            raise ExtractionInputError(f"{item}: no such file or folder")
    return list(videos.items())


# ------------------------------------------------------------------------------------------------
# output
# ------------------------------------------------------------------------------------------------
class FeatureFile:
    """The output HDF5 file, opened for appending; one whole video per ``write``."""

    def __init__(self, path, layout):
        import h5py

        self.path = path
        self.layout = dict(layout)
        try:
            # libver v110: attributes larger than 64 KiB (the timestamps of long videos) are allowed
            self.file = h5py.File(path, "a", libver=("v110", "latest"))
        except OSError as err:
            raise ExtractionInputError(f"{path}: cannot open for appending: {err}") from None
        try:
            self._check_layout()
        except ExtractionInputError:
            self.file.close()
            raise
        if PARTIAL_GROUP in self.file:  # left by an interrupted run: never a finished video
            del self.file[PARTIAL_GROUP]
        self.file.flush()

    def _check_layout(self):
        attrs = self.file.attrs
        existing = {k: attrs[k] for k in LAYOUT_ATTRS if k in attrs}
        if not existing:
            if any(k != PARTIAL_GROUP for k in self.file.keys()):
                raise ExtractionInputError(f"{self.path}: holds features that mmn-extract did not write "
                                           "(no encoder/fps attributes); choose a new output file")
            for k, v in self.layout.items():
                attrs[k] = v
            return
        for k, v in self.layout.items():
            old = existing.get(k)
            old = old.item() if isinstance(old, np.generic) else old
            if old != v:
                raise ExtractionInputError(
                    f"{self.path}: was written with {k} {old!r}, this run uses {v!r}; features of two extractors "
                    "must not share a file: choose a new output file (or the same settings)")

    def __contains__(self, vid):
        return vid in self.file and vid != PARTIAL_GROUP

    def write(self, vid, feats, attrs):
        """Write ``feats`` (T, D) and ``attrs`` under a temporary name, then rename it to ``vid`` and flush."""
        partial = self.file.require_group(PARTIAL_GROUP)
        if vid in partial:
            del partial[vid]
        dataset = partial.create_dataset(vid, data=np.asarray(feats, dtype=np.float32))
        for k, v in attrs.items():
            dataset.attrs[k] = v
        self.file.flush()
        self.file.move(f"{PARTIAL_GROUP}/{vid}", vid)
        self.file.flush()

    def durations(self):
        """``{video_id: duration_s}`` of every video in the file."""
        return {vid: float(node.attrs["duration"]) for vid, node in self.file.items()
                if vid != PARTIAL_GROUP and "duration" in node.attrs}

    def close(self):
        if PARTIAL_GROUP in self.file and not len(self.file[PARTIAL_GROUP]):
            del self.file[PARTIAL_GROUP]
        self.file.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def default_durations_path(out):
    return os.path.splitext(out)[0] + ".durations.json"


def _atomic_write_json(obj, path):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=1, sort_keys=True)
    os.replace(tmp, path)


def write_annotation_skeleton(path, durations):
    """A Charades-STA-format annotation file to fill in: ``{vid: {"duration", "timestamps": [], "sentences": []}}``.

    Entries already in ``path`` are kept as they are (so it can be re-run after more videos were
    extracted); new videos are added with empty moment lists. Returns the number of videos added.
    """
    entries = {}
    if os.path.isfile(path):
        try:
            with open(path, encoding="utf-8") as f:
                entries = json.load(f)
        except ValueError as err:
            raise ExtractionInputError(f"{path}: existing annotation file is not valid JSON: {err}") from None
    added = [vid for vid in durations if vid not in entries]
    for vid in added:
        entries[vid] = {"duration": round(durations[vid], 3), "timestamps": [], "sentences": []}
    _atomic_write_json(entries, path)
    return len(added)


# ------------------------------------------------------------------------------------------------
# extraction
# ------------------------------------------------------------------------------------------------
@dataclass
class ExtractionSummary:
    extracted: list = field(default_factory=list)   # video ids written in this run
    skipped: list = field(default_factory=list)     # already in the output
    failed: list = field(default_factory=list)      # (video_id, path, message)
    frames: int = 0           # rows (sampled frames) encoded in this run
    decoded_frames: int = 0   # frames the decoder produced to find them
    decode_s: float = 0.0     # demuxing + decoding + RGB conversion
    preprocess_s: float = 0.0  # the image processor (resize, crop, normalise)
    encode_s: float = 0.0     # the model's forward pass
    wall_s: float = 0.0
    durations: dict = field(default_factory=dict)  # {video_id: duration_s} of every video in the file

    def line(self):
        total = len(self.extracted) + len(self.skipped) + len(self.failed)
        text = (f"{total} video(s): {len(self.extracted)} extracted, {len(self.skipped)} already in the output, "
                f"{len(self.failed)} failed")
        if self.frames:
            text += (f"; {self.frames} frames in {self.wall_s:.1f} s ({self.frames / max(self.wall_s, 1e-9):.1f} "
                     f"frames/s; decode {self.decode_s:.1f} s, preprocess {self.preprocess_s:.1f} s, "
                     f"encode {self.encode_s:.1f} s)")
        return text


def extract_video(path, encoder, fps, progress=None):
    """(features (T, D) float32, SampledVideo) of one video; raises VideoDecodeError naming the file."""
    video = SampledVideo(path, fps)
    rows, batch = [], []
    decode_s = 0.0
    frames = iter(video)
    while True:
        t0 = time.perf_counter()
        try:
            _, rgb = next(frames)
        except StopIteration:
            decode_s += time.perf_counter() - t0
            break
        decode_s += time.perf_counter() - t0
        if progress is not None and progress.total is None and video.expected_rows:
            progress.reset(total=video.expected_rows)
        batch.append(rgb)
        if len(batch) == encoder.batch_size:
            rows.append(encoder.encode_batch(batch))
            if progress is not None:
                progress.update(len(batch))
            batch = []
    if batch:
        rows.append(encoder.encode_batch(batch))
        if progress is not None:
            progress.update(len(batch))
    video.decode_s = decode_s  # time spent waiting on the decoder (demux, decode, RGB conversion)
    return np.concatenate(rows).astype(np.float32, copy=False), video


def extract_videos(videos, out, encoder, fps, progress=True):
    """Extract ``videos`` ([(video_id, path)]) into the HDF5 file ``out``; returns an ExtractionSummary.

    Videos already in ``out`` are skipped; undecodable ones are reported (printed to stderr, and listed in
    the summary's ``failed``) and skipped. Any other error (the encoder, the disk) stops the run, keeping the
    videos written so far.
    """
    from tqdm import tqdm

    summary = ExtractionSummary()
    start = time.perf_counter()
    pre0, enc0 = encoder.preprocess_s, encoder.encode_s
    layout = {"encoder": encoder.name, "fps": float(fps), "feature_dim": int(encoder.dim)}
    with FeatureFile(out, layout) as store:
        bar = tqdm(videos, unit="video", desc="videos", disable=not progress, file=sys.stderr)
        for vid, path in bar:
            if vid in store:
                summary.skipped.append(vid)
                continue
            bar.set_postfix_str(vid)
            frames_bar = tqdm(unit="frame", desc=vid, leave=False, disable=not progress, file=sys.stderr)
            try:
                feats, video = extract_video(path, encoder, fps, frames_bar)
            except VideoDecodeError as err:
                summary.failed.append((vid, path, str(err)))
                tqdm.write(f"mmn-extract: skipped video {vid!r}: {err}", file=sys.stderr)  # between the bars
                continue
            finally:
                frames_bar.close()
            store.write(vid, feats, {"duration": video.duration, "fps": float(fps),
                                     "timestamps": np.asarray(video.timestamps, dtype=np.float64),
                                     "source": os.path.abspath(path), "encoder": encoder.name})
            summary.extracted.append(vid)
            summary.frames += len(feats)
            summary.decoded_frames += video.decode_frames
            summary.decode_s += video.decode_s
        durations = store.durations()
    summary.preprocess_s = encoder.preprocess_s - pre0
    summary.encode_s = encoder.encode_s - enc0
    summary.wall_s = time.perf_counter() - start
    summary.durations = durations
    return summary


# ------------------------------------------------------------------------------------------------
# CLI
# ------------------------------------------------------------------------------------------------
def build_parser():
    parser = argparse.ArgumentParser(
        prog="mmn-extract", description="Video files -> CLIP image features (one HDF5 file) for mmn.")
    parser.add_argument("inputs", nargs="+", metavar="INPUT",
                        help="video files, folders of videos, or list files (.txt: one path per line)")
    parser.add_argument("--out", required=True, metavar="FEATS.hdf5", help="HDF5 output (appended to; resumable)")
    parser.add_argument("--encoder", default=DEFAULT_ENCODER, metavar="NAME_OR_PATH",
                        help=f"CLIP model for from_pretrained: hub name or local directory (default {DEFAULT_ENCODER})")
    parser.add_argument("--fps", type=float, default=0.5, help="frames sampled per second (default 0.5: one every 2 s)")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1, ... (default: CUDA when available)")
    parser.add_argument("--dtype", choices=DTYPES, default="fp32", help="bf16: autocast forward (for CUDA)")
    parser.add_argument("--batch-size", type=int, default=64, help="frames per forward pass")
    parser.add_argument("--durations", default=None, metavar="FILE.json",
                        help="where to write {video_id: duration_s} (default: <out stem>.durations.json)")
    parser.add_argument("--annotation-skeleton", default=None, metavar="FILE.json",
                        help="also write/extend a Charades-STA-format annotation file with empty moments to fill in")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    return parser


def main(argv=None):
    """Parse ``argv`` and extract; returns the exit status: 0, or 1 when any video failed. Bad inputs or
    output raise an ``MMNError`` (``cli`` reports it in one line, status 2)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    if not (args.fps > 0):
        parser.error(f"--fps must be > 0, got {args.fps}")
    if args.batch_size < 1:
        parser.error(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    videos = collect_videos(args.inputs)
    if not videos:
        raise ExtractionInputError(f"no video files in {' '.join(args.inputs)}")
    encoder = load_image_encoder(args.encoder, args.device, args.dtype, args.batch_size)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    summary = extract_videos(videos, args.out, encoder, args.fps, progress=not args.no_progress)
    durations_path = args.durations or default_durations_path(args.out)
    _atomic_write_json(summary.durations, durations_path)
    if args.annotation_skeleton:
        added = write_annotation_skeleton(args.annotation_skeleton, summary.durations)
        print(f"mmn-extract: {args.annotation_skeleton}: {added} video(s) added with empty moments to fill in")
    print(f"mmn-extract: {args.out}: {summary.line()}")
    print(f"mmn-extract: durations of the {len(summary.durations)} video(s) in the file: {durations_path}")
    for vid, path, message in summary.failed:
        print(f"mmn-extract: FAILED {vid}: {message}")
    return 1 if summary.failed else 0


def cli():
    """The mmn-extract console script: exit status 0, 1 when some videos failed (named in the summary),
    or one error line and 2 for unusable inputs, output file or encoder (``--debug``: the traceback)."""
    return run_cli(main, prog="mmn-extract")


if __name__ == "__main__":
    raise SystemExit(cli())
