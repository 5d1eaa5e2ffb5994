"""Annotation adapters: with the catalog entries (mmn/data/catalog.py), the only place where datasets differ.

Each adapter turns one JSON entry into (duration_s, [(start_s, end_s), ...], [sentence, ...]).
``load_annotations`` then applies the official clean-up (drop start >= end, clamp to [0, duration]),
drops the pairs that clamping leaves empty or inverted (wholly outside the video), and validates
everything it can before any feature is read.
"""
import json
import logging
import math
from dataclasses import dataclass, field
from typing import List, Optional

from ..utils.errors import MMNError

logger = logging.getLogger(__name__)


# Moving a bound by less than this is float noise of the annotation files (ActivityNet has 232 ends that
# overshoot the duration by 3e-14 s); such bounds are still clamped, just not counted as clamped.
CLAMP_TOLERANCE = 1e-6


class AnnotationError(MMNError, ValueError):
    """An annotation file that cannot be used, with the file and the video named."""


def _seconds_adapter(path, vid, entry):
    duration = _number(path, vid, entry, "duration")
    return duration, entry["timestamps"], entry["sentences"]


def _tacos_adapter(path, vid, entry):
    fps = _number(path, vid, entry, "fps")
    num_frames = _number(path, vid, entry, "num_frames")
    if fps <= 0:
        raise AnnotationError(f"{path}: video {vid!r}: fps must be > 0, got {fps}")
    stamps = entry["timestamps"]
    _check_pairs(path, vid, stamps)
    return num_frames / fps, [[s / fps, e / fps] for s, e in stamps], entry["sentences"]


ADAPTERS = {
    "charades": _seconds_adapter,
    "activitynet": _seconds_adapter,
    "tacos": _tacos_adapter,
}

# formats whose file is not a JSON object keyed by video: name -> loader(path) -> (videos, stats), registered by
# their module (mmn/data/qvhighlights.py: one query per jsonl line)
FILE_LOADERS = {}


def annotation_formats():
    """Every format name ``load_annotations`` reads."""
    return sorted(set(ADAPTERS) | set(FILE_LOADERS))


@dataclass
class VideoAnnotation:
    vid: str
    duration: float
    moments: List[List[float]]  # per sentence [start_s, end_s], cleaned
    sentences: List[str]
    qids: Optional[list] = None     # per sentence its query id, for formats that have one (qvhighlights)
    windows: Optional[list] = None  # per sentence all its [start_s, end_s] (qvhighlights: several; None: no labels)


@dataclass
class AnnotationStats:
    path: str
    videos: int = 0
    queries: int = 0
    dropped: int = 0  # start >= end
    clamped: int = 0  # start < 0 or end > duration, beyond CLAMP_TOLERANCE (kept pairs only)
    dropped_items: list = field(default_factory=list)  # (vid, index) of the start >= end pairs
    outside: int = 0  # start < end but no overlap with [0, duration]: empty or inverted once clamped
    outside_items: list = field(default_factory=list)  # (vid, index) of those


def _number(path, vid, entry, key):
    if key not in entry:
        raise AnnotationError(f"{path}: video {vid!r}: missing field {key!r}")
    value = entry[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise AnnotationError(f"{path}: video {vid!r}: field {key!r} must be a finite number, got {value!r}")
    return float(value)


def _check_pairs(path, vid, stamps):
    if not isinstance(stamps, list):
        raise AnnotationError(f"{path}: video {vid!r}: 'timestamps' must be a list")
    for k, pair in enumerate(stamps):
        if (not isinstance(pair, (list, tuple)) or len(pair) != 2
                or not all(isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in pair)):
            raise AnnotationError(f"{path}: video {vid!r}: timestamp #{k} must be [start, end] numbers, got {pair!r}")


def read_json(path):
    """Parse a JSON file; a syntax error names the file and the position."""
    try:
        with open(path, "r", encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise AnnotationError(f"{path}: annotation file not found") from None
    except json.JSONDecodeError as err:
        raise AnnotationError(f"{path}: malformed JSON: {err}") from None


def load_annotations(path, fmt):
    """Read and clean an annotation file of format ``fmt`` (``annotation_formats()``: charades / activitynet /
    tacos / qvhighlights).

    Returns (list of VideoAnnotation in file order, AnnotationStats).
    """
    if fmt in FILE_LOADERS:
        return FILE_LOADERS[fmt](path)
    if fmt not in ADAPTERS:
        raise AnnotationError(f"{path}: unknown annotation format {fmt!r}; known: {annotation_formats()}")
    raw = read_json(path)
    if not isinstance(raw, dict):
        raise AnnotationError(f"{path}: expected a JSON object keyed by video id, got {type(raw).__name__}")
    adapter = ADAPTERS[fmt]
    stats = AnnotationStats(path=path)
    videos = []
    for vid, entry in raw.items():
        if not isinstance(entry, dict):
            raise AnnotationError(f"{path}: video {vid!r}: expected an object, got {type(entry).__name__}")
        for key in ("timestamps", "sentences"):
            if key not in entry:
                raise AnnotationError(f"{path}: video {vid!r}: missing field {key!r}")
        _check_pairs(path, vid, entry["timestamps"])
        duration, stamps, sentences = adapter(path, vid, entry)
        if duration <= 0:
            raise AnnotationError(f"{path}: video {vid!r}: duration must be > 0, got {duration}")
        if not isinstance(sentences, list) or len(sentences) != len(stamps):
            raise AnnotationError(
                f"{path}: video {vid!r}: {len(stamps)} timestamps but "
                f"{len(sentences) if isinstance(sentences, list) else 'no list of'} sentences")
        moments, kept = [], []
        for k, ((start, end), sentence) in enumerate(zip(stamps, sentences)):
            if not isinstance(sentence, str):
                raise AnnotationError(f"{path}: video {vid!r}: sentence #{k} must be a string, got {sentence!r}")
            if not sentence.strip():
                raise AnnotationError(f"{path}: video {vid!r}: sentence #{k} is empty")
            if start >= end:
                stats.dropped += 1
                stats.dropped_items.append((vid, k))
                continue
            moment = [max(start, 0), min(end, duration)]
            if moment[0] >= moment[1]:
                # e.g. [-5, -1] or [d + 5, d + 10]: clamping would make the target [0, -1] or [d + 5, d]
                stats.outside += 1
                stats.outside_items.append((vid, k))
                continue
            if start < -CLAMP_TOLERANCE or end > duration + CLAMP_TOLERANCE:
                stats.clamped += 1
            moments.append(moment)
            kept.append(sentence)
        if not kept:
            raise AnnotationError(f"{path}: video {vid!r}: no valid sentence left (every timestamp has start >= end "
                                  f"or lies outside [0, duration {duration:g}])")
        videos.append(VideoAnnotation(vid=vid, duration=duration, moments=moments, sentences=kept))
        stats.queries += len(kept)
    stats.videos = len(videos)
    if not videos:
        raise AnnotationError(f"{path}: no video in the file")
    logger.info("%s: %d videos, %d queries; dropped %d pairs with start >= end and %d outside [0, duration], "
                "clamped %d to [0, duration]",
                path, stats.videos, stats.queries, stats.dropped, stats.outside, stats.clamped)
    return videos, stats
