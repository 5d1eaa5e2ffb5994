"""QVHighlights jsonl files: validation (one-line errors naming the file, the line and the qid), the
submission writer, and the ``mmn-eval-qvh`` command. Self-contained: a few generated rows of the
official form, written to tmp_path."""
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from mmn.evaluation import qvh_eval
from mmn.evaluation.qvhighlights import eval_submission
from mmn.structures.qvh_records import (QVHRecordError, Ragged, check_ground_truth, check_submission, read_jsonl,
                                        read_submission, submission_row, submission_rows, write_jsonl)


def rows(num_queries=6, duration=20):
    """(submission, ground truth) rows of the official form: 10-clip videos, 2 GT windows, 3 annotators."""
    gt, sub = [], []
    for qid in range(num_queries):
        gt.append({"qid": qid, "query": f"query {qid}", "duration": duration, "vid": f"vid{qid}",
                   "relevant_windows": [[2, 6], [10, 12 + 2 * (qid % 3)]], "relevant_clip_ids": [1, 2, 5, 6],
                   "saliency_scores": [[4, 2, 1], [3, 3, 0], [2, 4, 4], [1, 0, 2]]})
        sub.append({"qid": qid, "query": f"query {qid}", "vid": f"vid{qid}",
                    "pred_relevant_windows": [[2.0, 6.0, 0.9], [8.0, 14.0, 0.5], [0.0, 4.0, 0.1]],
                    "pred_saliency_scores": [0.1 * ((qid + c) % 7) for c in range(duration // 2)]})
    return sub, gt


def write(path, items):
    with open(path, "w") as f:
        f.write("".join((item if isinstance(item, str) else json.dumps(item)) + "\n" for item in items))
    return str(path)


def score(tmp_path, sub, gt):
    """mmn-eval-qvh's path on files: the QVHRecordError message, one line."""
    sub_path, gt_path = write(tmp_path / "pred.jsonl", sub), write(tmp_path / "gt.jsonl", gt)
    with pytest.raises(QVHRecordError) as err:
        qvh_eval.main(["--submission", sub_path, "--gt", gt_path, "--quiet"])
    message = str(err.value)
    assert "\n" not in message
    return message, sub_path, gt_path


# ------------------------------------------------------------------------------------------------
# validation errors
# ------------------------------------------------------------------------------------------------
def test_malformed_json_names_the_line(tmp_path):
    sub, gt = rows()
    message, sub_path, _ = score(tmp_path, [json.dumps(r) for r in sub[:3]] + ['{"qid": 3, "query": '] + sub[4:], gt)
    assert message.startswith(f"{sub_path}:4: malformed JSON")


def test_a_line_that_is_not_an_object(tmp_path):
    sub, gt = rows()
    message, sub_path, _ = score(tmp_path, sub[:2] + ["[1, 2]"] + sub[2:], gt)
    assert message == f"{sub_path}:3: expected a JSON object, got list"


def test_unknown_qid(tmp_path):
    sub, gt = rows()
    sub[2]["qid"] = 99
    message, sub_path, _ = score(tmp_path, sub, gt)
    assert message == f"{sub_path}:3: qid 99: unknown qid (not in the ground truth)"


def test_window_end_before_start(tmp_path):
    sub, gt = rows()
    sub[4]["pred_relevant_windows"][1] = [14.0, 8.0, 0.5]
    message, sub_path, _ = score(tmp_path, sub, gt)
    assert message == f"{sub_path}:5: qid 4: predicted window 2 [14.0, 8.0, 0.5] has end < start"


def test_missing_fields(tmp_path):
    sub, gt = rows()
    del sub[1]["qid"]
    message, sub_path, _ = score(tmp_path, sub, gt)
    assert message == f"{sub_path}:2: missing field 'qid'"
    sub, gt = rows()
    del sub[3]["pred_saliency_scores"]
    message, sub_path, _ = score(tmp_path, sub, gt)
    assert message == f"{sub_path}:4: qid 3: lacks 'pred_saliency_scores', unlike {sub_path}:1"
    sub, gt = rows()
    for row in sub:
        del row["pred_saliency_scores"], row["pred_relevant_windows"]
    message, sub_path, _ = score(tmp_path, sub, gt)
    assert message == f"{sub_path}:1: qid 0: missing field 'pred_relevant_windows' or 'pred_saliency_scores'"


def test_saliency_count_against_the_video(tmp_path):
    """10 clips: 9 or 11 scores pass (the official sample has rows one clip short), 12 do not."""
    sub, gt = rows()
    sub[0]["pred_saliency_scores"] = sub[0]["pred_saliency_scores"][:9]
    sub[1]["pred_saliency_scores"] = sub[1]["pred_saliency_scores"] + [0.0]
    check_submission(sub, "pred.jsonl", check_ground_truth(gt, "gt.jsonl"))
    sub[5]["pred_saliency_scores"] = sub[5]["pred_saliency_scores"] + [0.0, 0.0]
    message, sub_path, _ = score(tmp_path, sub, gt)
    assert message == f"{sub_path}:6: qid 5: 12 saliency scores for a video of 10 clips (duration 20 s / 2 s)"


def test_bad_numbers(tmp_path):
    sub, gt = rows()
    sub[2]["pred_relevant_windows"][0] = ["2", 6.0, 0.9]
    message, sub_path, _ = score(tmp_path, sub, gt)
    assert message.startswith(f"{sub_path}:3: qid 2: 'pred_relevant_windows' must be a non-empty list of [start, end, "
                              f"score] numbers, got [[\"2\", 6.0, 0.9]")
    sub, gt = rows()
    sub[1]["pred_relevant_windows"][2] = [0.0, 4.0]
    assert score(tmp_path, sub, gt)[0].startswith(f"{sub_path}:2: qid 1: 'pred_relevant_windows' must be")
    sub, gt = rows()
    sub[3]["pred_saliency_scores"][4] = float("nan")
    message, _, _ = score(tmp_path, sub, gt)
    assert message.startswith(f"{sub_path}:4: qid 3: 'pred_saliency_scores' must be a non-empty list of finite numbers")
    sub, gt = rows()
    sub[5]["pred_saliency_scores"][2] = [0.5]
    assert score(tmp_path, sub, gt)[0].startswith(f"{sub_path}:6: qid 5: 'pred_saliency_scores' must be")
    sub, gt = rows()
    sub[0]["pred_relevant_windows"] = []
    assert score(tmp_path, sub, gt)[0].startswith(f"{sub_path}:1: qid 0: 'pred_relevant_windows' must be a non-empty")


def test_repeated_qid_and_vid_mismatch(tmp_path):
    sub, gt = rows()
    sub[4]["qid"] = 1
    message, sub_path, _ = score(tmp_path, sub, gt)
    assert message == f"{sub_path}:5: qid 1: qid repeated (first at {sub_path}:2)"
    sub, gt = rows()
    sub[2]["vid"] = "other"
    assert score(tmp_path, sub, gt)[0] == f"{sub_path}:3: qid 2: vid 'other' but the ground truth has 'vid2'"


def test_ground_truth_errors(tmp_path):
    sub, gt = rows()
    test_split = [{k: r[k] for k in ("qid", "query", "duration", "vid")} for r in gt]
    message, _, gt_path = score(tmp_path, sub, test_split)
    assert message == (f"{gt_path}:1: qid 0: missing field 'relevant_windows' (a split without labels, such as "
                       "highlight_test_release.jsonl, cannot be scored)")
    cases = [
        (lambda g: g[1].update(relevant_windows=[[2, 6], [8, 8]]), "2: qid 1: relevant window [8.0, 8.0] has end <= start"),
        (lambda g: g[2].update(relevant_clip_ids=[1, 2, 5, 10]),
         "3: qid 2: relevant clip id 10 is not a clip of the video (duration 20 s: clips 0..9)"),
        (lambda g: g[3].update(saliency_scores=g[3]["saliency_scores"][:3]),
         "4: qid 3: 3 saliency score rows for 4 relevant clip ids"),
        (lambda g: g[4].update(relevant_clip_ids=[1, 2, 2, 6]), "5: qid 4: 'relevant_clip_ids' repeats a clip"),
        (lambda g: g[5].update(duration=0), "6: qid 5: 'duration' must be a positive number of seconds, got 0"),
        (lambda g: g[1]["saliency_scores"].__setitem__(0, [4, 2]),
         "2: qid 1: 'saliency_scores' must be a list of rows of 3 annotator scores (as the first row), got"),
    ]
    for change, expected in cases:
        sub, gt = rows()
        change(gt)
        message, _, gt_path = score(tmp_path, sub, gt)
        assert message.startswith(f"{gt_path}:{expected}"), message


def test_every_ground_truth_qid_needs_a_prediction(tmp_path):
    sub, gt = rows()
    message, sub_path, gt_path = score(tmp_path, sub[:4], gt)
    assert message == f"{sub_path}: no prediction for 2 of the 6 qids of {gt_path}: 4, 5"
    # --subset scores the shared qids, as the official match_number=False
    metrics = qvh_eval.main(["--submission", sub_path, "--gt", gt_path, "--quiet", "--subset"])
    assert metrics == eval_submission(sub[:4], gt[:4])


def test_unreadable_files(tmp_path):
    missing = str(tmp_path / "none.jsonl")
    with pytest.raises(QVHRecordError, match=f"^{missing}: cannot read"):
        read_jsonl(missing)
    empty = write(tmp_path / "empty.jsonl", ["", "  "])
    with pytest.raises(QVHRecordError, match=f"^{empty}: no rows$"):
        read_jsonl(empty)


def test_in_memory_rows_are_named_by_row():
    sub, gt = rows()
    sub[2]["pred_relevant_windows"][0] = [6.0, 2.0, 0.9]
    with pytest.raises(QVHRecordError, match=r"^submission: row 3: qid 2: predicted window 1"):
        eval_submission(sub, gt)


# ------------------------------------------------------------------------------------------------
# the command
# ------------------------------------------------------------------------------------------------
def test_cli_writes_the_official_json(tmp_path, capsys):
    sub, gt = rows()
    sub_path, gt_path = write(tmp_path / "pred.jsonl", sub), write(tmp_path / "gt.jsonl", gt)
    out = tmp_path / "out" / "metrics.json"
    metrics = qvh_eval.main(["--submission_path", sub_path, "--gt_path", gt_path, "--save_path", str(out)])
    text = out.read_text()
    assert text == json.dumps(eval_submission(sub, gt), indent=4) == capsys.readouterr().out.rstrip("\n")
    assert json.loads(text) == metrics and list(json.loads(text)) == ["brief", "HL-min-Fair", "HL-min-Good",
                                                                      "HL-min-VeryGood", "full", "long", "middle", "short"]
    assert sorted(os.listdir(out.parent)) == ["metrics.json"]  # atomic: no temporary file left


def test_cli_error_is_one_line_and_exit_2(tmp_path, capsys):
    sub, gt = rows()
    sub[0]["qid"] = 42
    sub_path, gt_path = write(tmp_path / "pred.jsonl", sub), write(tmp_path / "gt.jsonl", gt)
    out = tmp_path / "metrics.json"
    out.write_text("previous")
    with pytest.raises(SystemExit) as err:
        qvh_eval.cli(["--submission", sub_path, "--gt", gt_path, "--save-path", str(out)])
    assert err.value.code == 2
    assert capsys.readouterr().err == f"mmn-eval-qvh: error: {sub_path}:1: qid 42: unknown qid (not in the ground truth)\n"
    assert out.read_text() == "previous"


def test_python_dash_m(tmp_path):
    sub, gt = rows()
    gt[0]["relevant_windows"] = [[6, 2]]
    sub_path, gt_path = write(tmp_path / "pred.jsonl", sub), write(tmp_path / "gt.jsonl", gt)
    proc = subprocess.run([sys.executable, "-m", "mmn.evaluation.qvh_eval", "--submission", sub_path, "--gt", gt_path],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr == f"mmn-eval-qvh: error: {gt_path}:1: qid 0: relevant window [6.0, 2.0] has end <= start\n"


# ------------------------------------------------------------------------------------------------
# writing submissions
# ------------------------------------------------------------------------------------------------
def test_submission_row_official_format():
    row = submission_row(7, "a query", "vid7", [[1.23456, 5.0], [0.0, 2.00004], [float("nan"), float("nan")], [3.0, 4.0]],
                         [0.5, 0.912345, float("-inf"), 0.5], saliency=np.array([0.1, -2.5, 1 / 3], dtype=np.float32))
    assert row == {"qid": 7, "query": "a query", "vid": "vid7",
                   "pred_relevant_windows": [[0.0, 2.0, 0.9123], [1.2346, 5.0, 0.5], [3.0, 4.0, 0.5]],
                   "pred_saliency_scores": [0.1, -2.5, 0.33333334]}
    assert json.dumps(row["pred_saliency_scores"]) == "[0.1, -2.5, 0.33333334]"


def test_saliency_written_keeps_the_order_of_float32_scores():
    scores = torch.randn(2000).float()
    scores[::7] = scores[3]  # ties stay ties
    written = submission_row(0, "", "", [[0.0, 1.0]], [1.0], saliency=scores)["pred_saliency_scores"]
    assert np.array_equal(np.argsort(written, kind="stable"), np.argsort(scores.numpy(), kind="stable"))
    assert np.array_equal(np.array(written, dtype=np.float32), scores.numpy())


def test_written_submission_scores_as_the_tensors(tmp_path):
    """Ranked moments + saliency of a model -> hl_val_submission.jsonl -> mmn-eval-qvh: the metrics of
    the written (4-decimal) rows."""
    _, gt = rows(8)
    generator = torch.Generator().manual_seed(0)
    moments = torch.sort(torch.rand(8, 5, 2, generator=generator) * 20, -1).values
    scores = torch.rand(8, 5, generator=generator)
    moments[0, 4], scores[0, 4] = float("nan"), float("-inf")  # padding of a query with 4 moments only
    saliency = torch.rand(8, 12, generator=generator)
    written = submission_rows([g["qid"] for g in gt], [g["query"] for g in gt], [g["vid"] for g in gt], moments, scores,
                              saliency, saliency_clips=[10] * 8)
    path = tmp_path / "hl_val_submission.jsonl"
    write_jsonl(str(path), written)
    assert len(written[0]["pred_relevant_windows"]) == 4 and len(written[1]["pred_saliency_scores"]) == 10
    assert read_submission(str(path), check_ground_truth(gt, "gt")) == written
    gt_path = write(tmp_path / "gt.jsonl", gt)
    assert qvh_eval.main(["--submission", str(path), "--gt", gt_path, "--quiet"]) == eval_submission(written, gt)
    for row, k in zip(written, range(8)):
        order = torch.argsort(scores[k], descending=True, stable=True)
        expected = [[float(f"{moments[k, i, 0]:.4f}"), float(f"{moments[k, i, 1]:.4f}"), float(f"{scores[k, i]:.4f}")]
                    for i in order.tolist() if math.isfinite(scores[k, i])]
        assert row["pred_relevant_windows"] == expected


def test_ragged_columns():
    column = Ragged(np.arange(10.0), [3, 0, 4, 3])
    taken = column.take([2, 0, 1])
    assert taken.values.tolist() == [3.0, 4.0, 5.0, 6.0, 0.0, 1.0, 2.0] and taken.counts.tolist() == [4, 3, 0]
    assert column.head(2).values.tolist() == [0.0, 1.0, 3.0, 4.0, 7.0, 8.0]
    padded, mask = column.padded()
    assert padded.shape == (4, 4) and mask.sum(1).tolist() == [3, 0, 4, 3] and padded[2].tolist() == [3.0, 4.0, 5.0, 6.0]
