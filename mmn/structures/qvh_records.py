"""The official QVHighlights jsonl records: reading, validating, and writing submissions.

Ground-truth rows (``highlight_{train,val,test}_release.jsonl``): qid, query, duration, vid, and on the
labelled splits relevant_windows [[s, e], ...], relevant_clip_ids [i, ...] (2-s clips) and
saliency_scores [[a1, a2, a3], ...] (one row per relevant clip, 0-4 per annotator).
Submission rows (the official evaluator's input, what ``hl_{val,test}_submission.jsonl`` holds): qid,
query, vid, pred_relevant_windows [[s, e, score], ...] ranked, pred_saliency_scores [one per clip].

Bad input raises ``QVHRecordError``: one line naming the file, the line and the qid. The checks are
those the official evaluator needs to run and to mean something; it is lenient in one place: a
saliency row may be one clip shorter or longer than the video's int(duration / 2) clips (the official
sample predictions are one short for 13 of 1,550 val queries; the evaluator pads with 0 / cuts, as
the metrics here do).
"""
import json
import math
from itertools import chain

import numpy as np

from ..utils.errors import MMNError

CLIP_LENGTH = 2.0
SALIENCY_COUNT_TOLERANCE = 1  # clips a saliency row may differ from int(duration / 2)
DECIMALS = 4  # the official submission writes windows and scores with 4 decimals
MAX_LISTED = 5  # qids named in an error about several rows


class QVHRecordError(MMNError, ValueError):
    """A QVHighlights jsonl file (ground truth or submission) that cannot be scored, with the row named."""


class _Rows:
    """Rows with where they came from: ``source`` (a path or a label) and their line numbers."""

    def __init__(self, rows, source, lines=None):
        if not isinstance(rows, (list, tuple)):
            raise QVHRecordError(f"{source}: expected a list of rows, got {type(rows).__name__}")
        self.rows = list(rows)
        self.source = source
        self.lines = list(lines) if lines is not None else None

    def where(self, i, row=None):
        place = f"{self.source}:{self.lines[i]}" if self.lines is not None else f"{self.source}: row {i + 1}"
        if isinstance(row, dict) and "qid" in row:
            place += f": qid {row['qid']!r}"
        return place

    def fail(self, i, row, message):
        raise QVHRecordError(f"{self.where(i, row)}: {message}")


# ------------------------------------------------------------------------------------------------
# reading
# ------------------------------------------------------------------------------------------------
def read_jsonl(path):
    """(rows, line numbers) of a jsonl file; blank lines are skipped, malformed JSON or a line that is
    not a JSON object is an error naming the line."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as err:
        raise QVHRecordError(f"{path}: cannot read ({err.strerror or err})") from None
    except UnicodeDecodeError as err:
        raise QVHRecordError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start})") from None
    rows, lines = [], []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise QVHRecordError(f"{path}:{number}: malformed JSON ({err.msg} at column {err.colno})") from None
        if not isinstance(row, dict):
            raise QVHRecordError(f"{path}:{number}: expected a JSON object, got {type(row).__name__}")
        rows.append(row)
        lines.append(number)
    if not rows:
        raise QVHRecordError(f"{path}: no rows")
    return rows, lines


def read_ground_truth(path, windows=True, saliency=True):
    """Validated GT rows of a jsonl file; ``windows`` / ``saliency``: those labels are required."""
    rows, lines = read_jsonl(path)
    return check_ground_truth(rows, path, windows=windows, saliency=saliency, lines=lines)


def read_submission(path, ground_truth=None):
    """Validated submission rows of a jsonl file (against validated GT rows when given)."""
    rows, lines = read_jsonl(path)
    return check_submission(rows, path, ground_truth, lines=lines)


# ------------------------------------------------------------------------------------------------
# ragged columns
# ------------------------------------------------------------------------------------------------
class Ragged:
    """Rows of different lengths as one flat array: ``values`` (N, or N x width) and ``counts`` (per row)."""

    def __init__(self, values, counts):
        self.values = values
        self.counts = np.asarray(counts, dtype=np.int64)

    def take(self, index):
        """The rows ``index`` (an integer array), in that order."""
        index = np.asarray(index, dtype=np.int64)
        starts = (np.cumsum(self.counts) - self.counts)[index]
        counts = self.counts[index]
        items = np.repeat(starts - (np.cumsum(counts) - counts), counts) + np.arange(counts.sum())
        return Ragged(self.values[items], counts)

    def head(self, limit):
        """The first ``limit`` items of each row."""
        position = np.arange(len(self.values)) - np.repeat(np.cumsum(self.counts) - self.counts, self.counts)
        return Ragged(self.values[position < limit], np.minimum(self.counts, limit))

    def padded(self, width=None):
        """(rows x L (x item width) array, 0 past each row's end; rows x L bool mask), L = the longest row
        (at least 1) or ``width``."""
        longest = max(int(self.counts.max()) if len(self.counts) else 0, 1, width or 0)
        mask = np.arange(longest) < self.counts[:, None]
        out = np.zeros(mask.shape + self.values.shape[1:], dtype=self.values.dtype)
        out[mask] = self.values
        return out, mask


def flat_numbers(lists, width=None, integers=False):
    """float64 array of every number of ``lists`` (per row a list of numbers, or of lists of ``width``
    numbers: N x width), or None if any item is not so or not finite (bool is not a number here;
    ``integers``: only int)."""
    try:
        items = list(chain.from_iterable(lists))
        if width is not None:
            if set(map(type, items)) - {list} or set(map(len, items)) - {width}:
                return None
            items = list(chain.from_iterable(items))
        if set(map(type, items)) - ({int} if integers else {int, float}):
            return None
        values = np.array(items, dtype=np.int64 if integers else np.float64)
    except (TypeError, ValueError, OverflowError):
        return None
    if not integers and not np.isfinite(values).all():
        return None
    return values if width is None else values.reshape(-1, width)


def _numbers(rows, key, expected, width=None, integers=False):
    """Ragged numbers under ``key`` of every row (see ``flat_numbers``); a bad row raises, named."""
    lists = [row[key] for row in rows.rows]
    values = flat_numbers(lists, width, integers)
    if values is None:
        for i, value in enumerate(lists):
            if flat_numbers([value], width, integers) is None:
                rows.fail(i, rows.rows[i], f"{key!r} must be {expected}, got {_short(value)}")
        raise QVHRecordError(f"{rows.source}: {key!r} must be {expected}")  # not reached
    return Ragged(values, [len(value) for value in lists])


def _row_of(counts, flat_index):
    """Row of the ``flat_index``-th item of rows holding ``counts`` items each."""
    return int(np.searchsorted(np.cumsum(counts), flat_index, side="right"))


def num_clips(duration, clip_length=CLIP_LENGTH):
    """Clips of a video, as the official evaluator counts them: int(duration / clip_length)."""
    return int(duration / clip_length)


UNLABELLED = " (a split without labels, such as highlight_test_release.jsonl, cannot be scored)"
GT_LISTS = {"relevant_windows": "a non-empty list of [start, end]",
            "relevant_clip_ids": "a non-empty list of clip indices",
            "saliency_scores": "a non-empty list of rows of annotator scores"}
PRED_LISTS = {"pred_relevant_windows": "a non-empty list of [start, end, score]",
              "pred_saliency_scores": "a non-empty list of numbers"}


def _structure_ok(rows, lists, duration):
    """True when, at a glance over all rows: objects with distinct int / str qids, a positive finite
    ``duration`` (if asked) and a non-empty list under each key of ``lists``. Else the caller walks
    the rows one by one to name the first bad one."""
    if set(map(type, rows)) != {dict}:
        return False
    qids = [row.get("qid") for row in rows]
    if set(map(type, qids)) - {int, str} or len(set(qids)) != len(qids):
        return False
    if duration:
        durations = [row.get("duration") for row in rows]
        if set(map(type, durations)) - {int, float}:
            return False
        try:
            durations = np.array(durations, dtype=np.float64)
        except OverflowError:
            return False
        if not (np.isfinite(durations) & (durations > 0)).all():
            return False
    for key in lists:
        values = [row.get(key) for row in rows]
        if set(map(type, values)) != {list} or not all(values):
            return False
    return True


def _check_row_structure(rows, i, row, seen, lists, duration):
    """The checks of ``_structure_ok`` on one row, raising with the row named."""
    if not isinstance(row, dict):
        rows.fail(i, row, f"expected a JSON object, got {type(row).__name__}")
    if "qid" not in row:
        rows.fail(i, row, "missing field 'qid'")
    qid = row["qid"]
    if isinstance(qid, bool) or not isinstance(qid, (int, str)):
        rows.fail(i, row, f"'qid' must be an integer or a string, got {type(qid).__name__}")
    if qid in seen:
        rows.fail(i, row, f"qid repeated (first at {rows.where(seen[qid])})")
    seen[qid] = i
    if duration:
        value = row.get("duration")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not _finite(value) or value <= 0:
            rows.fail(i, row, f"'duration' must be a positive number of seconds, got {value!r}")
    for key, expected in lists.items():
        if key not in row:
            rows.fail(i, row, f"missing field {key!r}" + (UNLABELLED if key in GT_LISTS else ""))
        if not isinstance(row[key], list) or not row[key]:
            rows.fail(i, row, f"{key!r} must be {expected}, got {_short(row[key])}")


def _finite(value):
    try:
        return math.isfinite(value)
    except OverflowError:  # an integer too large for a float
        return False


def _check_structure(rows, lists, duration=False):
    if not _structure_ok(rows.rows, lists, duration):
        seen = {}
        for i, row in enumerate(rows.rows):
            _check_row_structure(rows, i, row, seen, lists, duration)
        raise QVHRecordError(f"{rows.source}: malformed rows")  # not reached: the walk names the row


def validate_ground_truth(rows, source, windows=True, saliency=True, lines=None):
    """Validate GT rows (a list of dicts): (the rows, their columns). ``windows`` requires
    relevant_windows (non-empty, each [s, e] with s < e: a zero-length window has no IoU), ``saliency``
    relevant_clip_ids (distinct clips of the video, at least one) with saliency_scores (one row per
    clip, the same number of annotators everywhere). Columns: "duration" (array) and a ``Ragged`` per
    label field."""
    rows = _Rows(rows, source, lines)
    lists = {key: GT_LISTS[key] for key in ("relevant_windows",) * windows
             + ("relevant_clip_ids", "saliency_scores") * saliency}
    _check_structure(rows, lists, duration=True)
    columns = {"duration": np.array([row["duration"] for row in rows.rows], dtype=np.float64)}
    if windows:
        spans = columns["relevant_windows"] = _numbers(rows, "relevant_windows", "a non-empty list of [start, end] numbers", 2)
        bad = np.nonzero(spans.values[:, 1] <= spans.values[:, 0])[0]
        if len(bad):
            i = _row_of(spans.counts, bad[0])
            rows.fail(i, rows.rows[i], f"relevant window {spans.values[bad[0]].tolist()} has end <= start")
    if saliency:
        clips = columns["relevant_clip_ids"] = _numbers(rows, "relevant_clip_ids", "a list of integers", integers=True)
        count = np.repeat([num_clips(d) for d in columns["duration"]], clips.counts)
        bad = np.nonzero((clips.values < 0) | (clips.values >= count))[0]
        if len(bad):
            i = _row_of(clips.counts, bad[0])
            rows.fail(i, rows.rows[i], f"relevant clip id {clips.values[bad[0]]} is not a clip of the video "
                                       f"(duration {rows.rows[i]['duration']} s: clips 0..{count[bad[0]] - 1})")
        keys = np.repeat(np.arange(len(clips.counts)), clips.counts) * (int(clips.values.max()) + 1) + clips.values
        if len(np.unique(keys)) != len(keys):
            i = next(i for i, row in enumerate(rows.rows) if len(set(row["relevant_clip_ids"])) != len(row["relevant_clip_ids"]))
            rows.fail(i, rows.rows[i], "'relevant_clip_ids' repeats a clip")
        num_scores = np.fromiter(map(len, (row["saliency_scores"] for row in rows.rows)), np.int64, len(rows.rows))
        bad = np.nonzero(num_scores != clips.counts)[0]
        if len(bad):
            i = int(bad[0])
            rows.fail(i, rows.rows[i], f"{num_scores[i]} saliency score rows for {clips.counts[i]} relevant clip ids")
        first = rows.rows[0]["saliency_scores"][0]
        annotators = len(first) if isinstance(first, list) and first else 1
        columns["saliency_scores"] = _numbers(rows, "saliency_scores",
                                              f"a list of rows of {annotators} annotator scores (as the first row)",
                                              annotators)
    return rows.rows, columns


def check_ground_truth(rows, source, windows=True, saliency=True, lines=None):
    """Validate GT rows and return them (see ``validate_ground_truth``)."""
    return validate_ground_truth(rows, source, windows, saliency, lines)[0]


def submission_fields(rows, source, lines=None):
    """Which predictions the submission holds: (windows, saliency) booleans, the same in every row (the
    official evaluator reads them off the first row)."""
    rows = _Rows(rows, source, lines)
    if not rows.rows:
        raise QVHRecordError(f"{source}: no rows")
    kinds = None
    for i, row in enumerate(rows.rows):
        if not isinstance(row, dict):
            rows.fail(i, row, f"expected a JSON object, got {type(row).__name__}")
        has = ("pred_relevant_windows" in row, "pred_saliency_scores" in row)
        if not any(has):
            rows.fail(i, row, "missing field 'pred_relevant_windows' or 'pred_saliency_scores'")
        if kinds is None:
            kinds, first = has, i
        elif has != kinds:
            field = "pred_relevant_windows" if has[0] != kinds[0] else "pred_saliency_scores"
            state = "has" if field in row else "lacks"
            rows.fail(i, row, f"{state} {field!r}, unlike {rows.where(first)}")
    return kinds


def validate_submission(rows, source, ground_truth=None, lines=None, tolerance=SALIENCY_COUNT_TOLERANCE):
    """Validate submission rows: (the rows, their columns). Distinct qids, windows [s, e, score] with
    e >= s (at least one per row), finite saliency scores; against validated GT rows: known qids, the
    same vid, and one saliency score per clip of the video (+- ``tolerance``). Columns: a ``Ragged``
    per prediction field."""
    windows, saliency = submission_fields(rows, source, lines)
    rows = _Rows(rows, source, lines)
    lists = {key: PRED_LISTS[key] for key in ("pred_relevant_windows",) * windows + ("pred_saliency_scores",) * saliency}
    _check_structure(rows, lists)
    if ground_truth is not None:
        gt = {row["qid"]: row for row in ground_truth}
        for i, row in enumerate(rows.rows):
            truth = gt.get(row["qid"])
            if truth is None:
                rows.fail(i, row, "unknown qid (not in the ground truth)")
            if truth.get("vid", row.get("vid")) != row.get("vid", truth.get("vid")):
                rows.fail(i, row, f"vid {row['vid']!r} but the ground truth has {truth['vid']!r}")
        if saliency:
            counts = np.array([len(row["pred_saliency_scores"]) for row in rows.rows])
            clips = np.array([num_clips(gt[row["qid"]]["duration"]) for row in rows.rows])
            bad = np.nonzero(np.abs(counts - clips) > tolerance)[0]
            if len(bad):
                i = int(bad[0])
                rows.fail(i, rows.rows[i], f"{counts[i]} saliency scores for a video of {clips[i]} clips (duration "
                                           f"{gt[rows.rows[i]['qid']]['duration']} s / {CLIP_LENGTH:g} s)")
    columns = {}
    if windows:
        preds = columns["pred_relevant_windows"] = _numbers(rows, "pred_relevant_windows",
                                                            "a non-empty list of [start, end, score] numbers", 3)
        bad = np.nonzero(preds.values[:, 1] < preds.values[:, 0])[0]
        if len(bad):
            i = _row_of(preds.counts, bad[0])
            rank = bad[0] - int(preds.counts[:i].sum())
            rows.fail(i, rows.rows[i], f"predicted window {rank + 1} {preds.values[bad[0]].tolist()} has end < start")
    if saliency:
        columns["pred_saliency_scores"] = _numbers(rows, "pred_saliency_scores", "a non-empty list of finite numbers")
    return rows.rows, columns


def check_submission(rows, source, ground_truth=None, lines=None, tolerance=SALIENCY_COUNT_TOLERANCE):
    """Validate submission rows and return them (see ``validate_submission``)."""
    return validate_submission(rows, source, ground_truth, lines, tolerance)[0]


def match_indices(submission, ground_truth, source=("submission", "ground truth"), match_number=True):
    """(submission row indices, GT row indices) of the scored queries, in submission order.
    ``match_number``: every GT qid must be predicted (the official default); otherwise only the shared
    qids are scored."""
    gt_index = {row["qid"]: i for i, row in enumerate(ground_truth)}
    predicted = {row["qid"] for row in submission}
    missing = [row["qid"] for row in ground_truth if row["qid"] not in predicted]
    if missing and match_number:
        more = f" ... and {len(missing) - MAX_LISTED} more" if len(missing) > MAX_LISTED else ""
        raise QVHRecordError(f"{source[0]}: no prediction for {len(missing)} of the {len(ground_truth)} qids of "
                             f"{source[1]}: {', '.join(map(repr, missing[:MAX_LISTED]))}{more}")
    kept = [i for i, row in enumerate(submission) if row["qid"] in gt_index]
    if not kept:
        raise QVHRecordError(f"{source[0]}: no qid in common with {source[1]}")
    return np.array(kept, dtype=np.int64), np.array([gt_index[submission[i]["qid"]] for i in kept], dtype=np.int64)


def match_rows(submission, ground_truth, source=("submission", "ground truth"), match_number=True):
    """(submission rows, their GT rows) of the scored queries, in submission order (``match_indices``)."""
    sub_index, gt_index = match_indices(submission, ground_truth, source, match_number)
    return [submission[i] for i in sub_index], [ground_truth[i] for i in gt_index]


def _short(value, limit=60):
    text = json.dumps(value) if not isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


# ------------------------------------------------------------------------------------------------
# writing
# ------------------------------------------------------------------------------------------------
def _rounded(value):
    return float(f"{value:.{DECIMALS}f}")


def submission_row(qid, query, vid, windows, scores, saliency=None):
    """One official submission row: windows [[s, e, score], ...] by score, descending (equal scores in
    the given order), 4 decimals; moments that are absent (a non-finite score or bound, the padding of
    ranked moments) are left out; saliency scores as float32 values, written in their shortest form."""
    windows = np.asarray(windows, dtype=np.float64).reshape(-1, 2)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    present = np.isfinite(scores) & np.isfinite(windows).all(1)
    order = [i for i in np.argsort(-scores, kind="stable") if present[i]]
    row = {"qid": qid, "query": query, "vid": vid,
           "pred_relevant_windows": [[_rounded(windows[i, 0]), _rounded(windows[i, 1]), _rounded(scores[i])]
                                     for i in order]}
    if saliency is not None:
        # str of a float32 is its shortest decimal that reads back to it: the order of the scores is kept
        row["pred_saliency_scores"] = [float(str(v)) for v in np.asarray(saliency, dtype=np.float32).reshape(-1)]
    return row


def submission_rows(qids, queries, vids, moments, scores, saliency=None, saliency_clips=None):
    """Submission rows of Q queries: ranked ``moments`` Q x k x 2 seconds with ``scores`` Q x k (tensors
    or arrays), optional per-clip ``saliency`` Q x T, cut to ``saliency_clips`` (Q) clips per query."""
    moments = np.asarray(moments, dtype=np.float64)
    scores = np.asarray(scores, dtype=np.float64)
    if saliency is not None:
        saliency = np.asarray(saliency, dtype=np.float32)
    rows = []
    for i, (qid, query, vid) in enumerate(zip(qids, queries, vids)):
        clip_scores = None
        if saliency is not None:
            clip_scores = saliency[i] if saliency_clips is None else saliency[i, :int(saliency_clips[i])]
        rows.append(submission_row(qid, query, vid, moments[i], scores[i], clip_scores))
    return rows


def write_jsonl(path, rows):
    """Write rows as jsonl, atomically (a crash leaves the previous file or the complete new one)."""
    from ..utils.checkpoint import atomic_write_text

    atomic_write_text("".join(json.dumps(row) + "\n" for row in rows), path)
