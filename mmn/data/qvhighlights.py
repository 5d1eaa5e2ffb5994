"""QVHighlights annotations (Lei et al., NeurIPS 2021): the official jsonl, one query per line.

A line of ``highlight_{train,val}_release.jsonl``::

    {"qid": 8737, "query": "A family is playing basketball ...", "duration": 126, "vid": "bP5KfdFJzC4_660.0_810.0",
     "relevant_windows": [[0, 16]], "relevant_clip_ids": [0, 1, ..., 7],
     "saliency_scores": [[4, 1, 1], [4, 1, 1], ...]}

``relevant_windows`` are seconds (possibly several windows per query), ``relevant_clip_ids`` index the
2-s clips of the video (clip k covers [2k, 2k + 2) s), ``saliency_scores`` hold one row per relevant clip
with the scores (0 "Very Bad" to 4 "Very Good") of the three annotators. The test split
(``highlight_test_release.jsonl``) carries only ``qid``, ``query``, ``duration`` and ``vid``.

``load_qvhighlights`` returns the records as ``QVHRecord`` (what Moment-DETR and the metrics read);
``load_annotations(path, "qvhighlights")`` (mmn/data/annotations.py) gives the per-video view the other
models read: the queries grouped by video in file order, one training moment per query (its first window;
every window in ``VideoAnnotation.windows``), NaN moments for a file without labels.

Every record is validated before anything else is read; a bad one is a one-line ``AnnotationError``
naming the file, the line and the ``qid``.
"""
import json
import math
from dataclasses import dataclass
from typing import List, Optional, Union

from .annotations import FILE_LOADERS, AnnotationError, AnnotationStats, VideoAnnotation

FORMAT = "qvhighlights"
CLIP_LENGTH = 2.0          # seconds per clip of relevant_clip_ids and of the official features
NUM_ANNOTATORS = 3
MAX_SALIENCY = 4           # "Very Good"
QUERY_FIELDS = ("qid", "query", "duration", "vid")
LABEL_FIELDS = ("relevant_windows", "relevant_clip_ids", "saliency_scores")
# windows may overshoot [0, duration] by float noise only
WINDOW_TOLERANCE = 1e-6


@dataclass
class QVHRecord:
    """One query of a QVHighlights-format file, values as written in the file.

    ``relevant_windows`` is the record's own list: Moment-DETR's loader shuffles it in place when a query
    has more windows than it trains on, as the official loader does. The label fields are None in a file
    without labels (the test split).
    """

    qid: Union[int, str]
    query: str
    duration: Union[int, float]
    vid: str
    relevant_windows: Optional[List[List[float]]] = None   # [[start_s, end_s], ...]
    relevant_clip_ids: Optional[List[int]] = None
    saliency_scores: Optional[List[List[int]]] = None      # per relevant clip, one score per annotator
    line: int = 0                                          # line number in the file (1-based), for errors

    @property
    def has_labels(self):
        return self.relevant_windows is not None


def num_clips(duration, clip_length=CLIP_LENGTH):
    """Clips of ``clip_length`` s that a video of ``duration`` s starts: clip ids run from 0 to this - 1."""
    return int(math.ceil(duration / clip_length - 1e-9))


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _record(path, line, raw, clip_length):
    """Validate one parsed line and return its QVHRecord."""
    where = f"{path}: line {line}"
    if not isinstance(raw, dict):
        raise AnnotationError(f"{where}: expected a JSON object, got {type(raw).__name__}")
    if "qid" not in raw:
        raise AnnotationError(f"{where}: missing field 'qid'")
    qid = raw["qid"]
    if not (_is_int(qid) or (isinstance(qid, str) and qid)):
        raise AnnotationError(f"{where}: 'qid' must be an integer (or a non-empty string), got {qid!r}")
    where = f"{where}: qid {qid}"
    missing = [k for k in QUERY_FIELDS if k not in raw]
    if missing:
        raise AnnotationError(f"{where}: missing field(s) {missing}")
    query, duration, vid = raw["query"], raw["duration"], raw["vid"]
    if not isinstance(query, str) or not query.strip():
        raise AnnotationError(f"{where}: 'query' must be a non-empty string, got {query!r}")
    if not isinstance(vid, str) or not vid:
        raise AnnotationError(f"{where}: 'vid' must be a non-empty string, got {vid!r}")
    if not _is_number(duration) or duration <= 0:
        raise AnnotationError(f"{where}: 'duration' must be a number > 0, got {duration!r}")
    present = [k for k in LABEL_FIELDS if k in raw]
    if not present:
        return QVHRecord(qid=qid, query=query, duration=duration, vid=vid, line=line)
    if len(present) < len(LABEL_FIELDS):
        raise AnnotationError(f"{where}: missing field(s) {[k for k in LABEL_FIELDS if k not in raw]} "
                              f"(a labelled record has all of {list(LABEL_FIELDS)}, an unlabelled one none)")
    windows, clip_ids, scores = (raw[k] for k in LABEL_FIELDS)
    if not isinstance(windows, list) or not windows:
        raise AnnotationError(f"{where}: 'relevant_windows' must be a non-empty list of [start, end], got {windows!r}")
    for k, window in enumerate(windows):
        if not isinstance(window, list) or len(window) != 2 or not all(_is_number(x) for x in window):
            raise AnnotationError(f"{where}: relevant window #{k} must be [start, end] numbers, got {window!r}")
        start, end = window
        if end <= start:
            raise AnnotationError(f"{where}: relevant window #{k} {window} has end <= start")
        if start < -WINDOW_TOLERANCE or end > duration + WINDOW_TOLERANCE:
            raise AnnotationError(f"{where}: relevant window #{k} {window} lies outside the video [0, {duration}]")
    if not isinstance(clip_ids, list) or not clip_ids or not all(_is_int(c) for c in clip_ids):
        raise AnnotationError(f"{where}: 'relevant_clip_ids' must be a non-empty list of integers, got {clip_ids!r}")
    count = num_clips(duration, clip_length)
    outside = [c for c in clip_ids if not 0 <= c < count]
    if outside:
        raise AnnotationError(f"{where}: relevant clip id(s) {outside[:5]} past the video (a {duration}-s video has "
                              f"clips 0 to {count - 1} of {clip_length:g} s)")
    if len(set(clip_ids)) != len(clip_ids):
        raise AnnotationError(f"{where}: 'relevant_clip_ids' repeats a clip id")
    if not isinstance(scores, list) or len(scores) != len(clip_ids):
        rows = len(scores) if isinstance(scores, list) else type(scores).__name__
        raise AnnotationError(f"{where}: 'saliency_scores' has {rows} rows for {len(clip_ids)} relevant clip ids "
                              "(one row per clip)")
    for k, row in enumerate(scores):
        if (not isinstance(row, list) or len(row) != NUM_ANNOTATORS
                or not all(_is_int(s) and 0 <= s <= MAX_SALIENCY for s in row)):
            raise AnnotationError(f"{where}: saliency row #{k} must be {NUM_ANNOTATORS} integers in "
                                  f"0..{MAX_SALIENCY} (one per annotator), got {row!r}")
    return QVHRecord(qid=qid, query=query, duration=duration, vid=vid, relevant_windows=windows,
                     relevant_clip_ids=clip_ids, saliency_scores=scores, line=line)


def load_qvhighlights(path, clip_length=CLIP_LENGTH):
    """The validated records of a QVHighlights-format jsonl file, in file order.

    Blank lines are skipped; every other line must be a record. All records of a file have labels or
    none has (the test split); a ``qid`` appears once.
    """
    try:
        with open(path, "r", encoding="utf-8") as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        raise AnnotationError(f"{path}: annotation file not found") from None
    records, seen = [], {}
    for number, text in enumerate(lines, 1):
        if not text.strip():
            continue
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as err:
            raise AnnotationError(f"{path}: line {number}: malformed JSON: {err.msg} (column {err.colno})") from None
        record = _record(path, number, raw, clip_length)
        if record.qid in seen:
            raise AnnotationError(f"{path}: line {number}: qid {record.qid} already used on line {seen[record.qid]}")
        seen[record.qid] = number
        if records and record.has_labels != records[0].has_labels:
            first = records[0]
            raise AnnotationError(
                f"{path}: line {number}: qid {record.qid} {'has' if record.has_labels else 'lacks'} the label fields "
                f"{list(LABEL_FIELDS)} while qid {first.qid} (line {first.line}) "
                f"{'has' if first.has_labels else 'lacks'} them: a file is labelled throughout or not at all")
        records.append(record)
    if not records:
        raise AnnotationError(f"{path}: no query in the file")
    return records


def videos_of_records(path, records):
    """The per-video view of ``records`` (``load_annotations``'s form): queries grouped by video in order of
    first appearance; per query the first window as its moment (all in ``windows``), NaN when unlabelled."""
    by_vid = {}
    for r in records:
        video = by_vid.get(r.vid)
        if video is None:
            video = by_vid[r.vid] = VideoAnnotation(vid=r.vid, duration=float(r.duration), moments=[], sentences=[],
                                                    qids=[], windows=[])
        elif float(r.duration) != video.duration:
            raise AnnotationError(f"{path}: line {r.line}: qid {r.qid}: video {r.vid!r} has duration {r.duration} "
                                  f"here but {video.duration:g} in an earlier record")
        windows = [[float(s), float(e)] for s, e in r.relevant_windows] if r.has_labels else None
        video.moments.append(list(windows[0]) if windows else [math.nan, math.nan])
        video.sentences.append(r.query)
        video.qids.append(r.qid)
        video.windows.append(windows)
    return list(by_vid.values())


def load_qvhighlights_videos(path):
    """``load_annotations`` of a QVHighlights-format file: (list of VideoAnnotation, AnnotationStats)."""
    records = load_qvhighlights(path)
    videos = videos_of_records(path, records)
    return videos, AnnotationStats(path=path, videos=len(videos), queries=len(records))


FILE_LOADERS[FORMAT] = load_qvhighlights_videos
