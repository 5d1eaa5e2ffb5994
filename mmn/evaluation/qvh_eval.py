"""``mmn-eval-qvh``: score a QVHighlights submission file, as the official standalone_eval/eval.py does.

    mmn-eval-qvh --submission PRED.jsonl --gt GT.jsonl [--save-path METRICS.json] [--quiet]
    python -m mmn.evaluation.qvh_eval ...      (the same)

PRED.jsonl holds one row per query (qid, query, vid, pred_relevant_windows [[s, e, score], ...],
pred_saliency_scores [one per 2-s clip]); GT.jsonl the official annotation rows (e.g.
highlight_val_release.jsonl, or the test labels once released). The metrics are printed, and written
with --save-path, in the official JSON form (``brief`` then the per-threshold blocks, the same keys,
rounding and layout: json indent 4), atomically. The official argument names (--submission_path,
--gt_path, --save_path, --not_verbose) are accepted too. A malformed file is one line on stderr naming
the file, the line and the qid, exit status 2.
"""
import argparse
import json

from ..utils.errors import run_cli


def build_parser():
    parser = argparse.ArgumentParser(
        prog="mmn-eval-qvh", description="Score a QVHighlights submission (moment retrieval and highlight detection) "
                                         "with the official metrics.")
    parser.add_argument("--submission", "--submission_path", required=True, metavar="PRED.jsonl",
                        help="the predictions, one official submission row per query")
    parser.add_argument("--gt", "--gt_path", required=True, metavar="GT.jsonl",
                        help="the ground truth, official annotation rows (with labels)")
    parser.add_argument("--save-path", "--save_path", default=None, metavar="METRICS.json",
                        help="write the metrics there (official JSON form)")
    parser.add_argument("--quiet", "--not_verbose", action="store_true", help="print nothing")
    parser.add_argument("--subset", action="store_true",
                        help="score the qids present in both files (the official match_number=False) instead of "
                             "requiring a prediction for every ground-truth qid")
    return parser


def main(argv=None):
    """Score the files; returns the official result dict."""
    from ..structures.qvh_records import read_jsonl
    from ..utils.checkpoint import atomic_write_text
    from .qvhighlights import eval_submission

    args = build_parser().parse_args(argv)
    submission, submission_lines = read_jsonl(args.submission)
    ground_truth, gt_lines = read_jsonl(args.gt)
    metrics = eval_submission(submission, ground_truth, match_number=not args.subset,
                              source=(args.submission, args.gt), lines=(submission_lines, gt_lines))
    text = json.dumps(metrics, indent=4)
    if args.save_path:
        atomic_write_text(text, args.save_path)
    if not args.quiet:
        print(text)
    return metrics


def cli(argv=None):
    """Console entry point: errors about the input become one line and exit status 2."""
    run_cli(main, argv, prog="mmn-eval-qvh")


if __name__ == "__main__":
    cli()
