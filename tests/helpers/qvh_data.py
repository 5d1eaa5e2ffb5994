"""Generated QVHighlights-format data for the tests (never the real CC BY-NC-SA annotations): records in the
exact jsonl format of ``highlight_{split}_release.jsonl`` and feature folders in the official release layout."""
import json
import os

import numpy as np


def record(qid, vid, windows, duration=150, query=None, scores=None, seed=0):
    """A labelled record whose relevant clips are exactly the 2-s clips its windows cover."""
    clips = sorted({c for s, e in windows for c in range(int(s) // 2, -(-int(e) // 2))})
    if scores is None:
        rng = np.random.default_rng(seed + qid)
        scores = rng.integers(0, 5, size=(len(clips), 3)).tolist()
    return {"qid": qid, "query": query or f"query number {qid} about a person", "duration": duration, "vid": vid,
            "relevant_windows": [list(w) for w in windows], "relevant_clip_ids": clips, "saliency_scores": scores}


def sample_records():
    """Records exercising the loader's cases: several windows (7 > max_windows 5), a window reaching the end of
    the video, a shorter video, a query covering every clip (empty easy-negative pool), two queries on a video."""
    return [
        record(101, "vidA_0.0_150.0", [[4, 10], [20, 24], [30, 36], [50, 52], [60, 70], [80, 84], [100, 104]]),
        record(102, "vidB_0.0_150.0", [[140, 150]]),
        record(103, "vidC_0.0_124.0", [[0, 16], [40, 60]], duration=124),
        record(104, "vidD_0.0_150.0", [[0, 150]]),
        record(105, "vidA_0.0_150.0", [[90, 120]]),
    ]


def write_jsonl(path, records):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(json.dumps(r) for r in records) + "\n")
    return path


def write_features(root, records, dims=(6, 4), text_dim=5, extra_rows=None, seed=3, folders=None):
    """``root/video_{k}/{vid}.npz`` (key ``features``, rows = duration / 2 + ``extra_rows[vid][k]``) per dim and
    ``root/text/qid{qid}.npz`` (key ``last_hidden_state``, words + 2 rows). Returns (video folders, text folder)."""
    rng = np.random.default_rng(seed)
    folders = folders or [os.path.join(root, f"video_{k}") for k in range(len(dims))]
    text = os.path.join(root, "text")
    for folder in folders + [text]:
        os.makedirs(folder, exist_ok=True)
    done = set()
    for r in records:
        if r["vid"] not in done:
            done.add(r["vid"])
            for k, (folder, dim) in enumerate(zip(folders, dims)):
                rows = int(r["duration"] // 2) + (extra_rows or {}).get(r["vid"], [0] * len(dims))[k]
                np.savez(os.path.join(folder, f"{r['vid']}.npz"),
                         features=(rng.standard_normal((rows, dim)) * (k + 1)).astype(np.float32))
        words = len(r["query"].split()) + 2
        np.savez(os.path.join(text, f"qid{r['qid']}.npz"),
                 last_hidden_state=rng.standard_normal((words, text_dim)).astype(np.float32))
    return folders, text
