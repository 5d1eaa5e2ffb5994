"""Speed of the QVHighlights metrics: ``mmn.evaluation.qvhighlights`` against the official algorithm.

    python -m benchmarks.qvh_eval [--repeats 5] [--workers 8] [--generate] [--queries 1550] [--out FILE.json]

Data: the official sample predictions for the 1,550 val queries (shared/fixtures/qvhighlights_eval)
against shared/data/qvhighlights/highlight_val_release.jsonl, when ../shared exists; else (or with
``--generate``) generated rows of the same shape: 150-s videos (some shorter), 1-25 GT windows per
query (the val split's mix), 3 annotators, 10 ranked predicted windows and one saliency score per clip.

Measured on rows already parsed from JSON (what the official ``eval_submission`` takes), wall and CPU
seconds, 1 torch thread:
  ours        mmn.evaluation.qvhighlights.eval_submission, validation included; median of --repeats
              after one warm-up run
  official 1  mmn.evaluation.reference.qvh_eval_submission(num_workers=1): standalone_eval's algorithm
              (a Python loop per query, scikit-learn's curve re-expressed) in this process
  official 8  the same with a multiprocessing.Pool(8) per length range and per saliency level, as
              standalone_eval runs by default (wall time only: the work happens in the workers)
The three result dicts are checked equal, and equal to sample_val_preds_metrics_raw.json on the fixture.
Goal: ours >= 20x faster than "official 1" (wall, same run). The machines are shared: the load average
is reported with the figures, and the CPU-time ratio is the steadier one under load.
"""
import argparse
import json
import os
import platform
import random
import statistics
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(REPO, "..", "shared")
FIXTURE = os.path.join(SHARED, "fixtures", "qvhighlights_eval")
GT_PATH = os.path.join(SHARED, "data", "qvhighlights", "highlight_val_release.jsonl")
GOAL = 20.0
# the val split's number of GT windows per query: 1,020 of 1,550 have one, 278 two, ..., one has 25
WINDOW_COUNTS = {1: 1020, 2: 278, 3: 116, 4: 40, 5: 33, 6: 20, 7: 12, 8: 9, 9: 6, 10: 3, 11: 3, 12: 2, 13: 2,
                 14: 1, 16: 1, 17: 1, 18: 1, 21: 1, 25: 1}


def _jsonl(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def generate_rows(num_queries=1550, seed=0):
    """(submission, ground truth) rows of the official shape, at random."""
    rng = random.Random(seed)
    counts, weights = zip(*WINDOW_COUNTS.items())
    submission, ground_truth = [], []
    for qid in range(num_queries):
        duration = 150 if rng.random() < 0.9 else 2 * rng.randint(60, 74)
        clips = duration // 2
        count = min(rng.choices(counts, weights)[0], clips // 2)
        starts = sorted(rng.sample(range(0, clips, 2), count))  # disjoint windows on the 2-s grid
        windows, relevant = [], []
        for i, s in enumerate(starts):
            limit = starts[i + 1] if i + 1 < len(starts) else clips
            e = rng.randint(s + 1, limit)
            windows.append([2 * s, 2 * e])
            relevant.extend(range(s, e))
        ground_truth.append({"qid": qid, "query": f"query {qid}", "duration": duration, "vid": f"video{qid}",
                             "relevant_windows": windows, "relevant_clip_ids": relevant,
                             "saliency_scores": [[rng.randint(0, 4) for _ in range(3)] for _ in relevant]})
        preds = []
        for _ in range(10):
            if windows and rng.random() < 0.5:  # near a GT window
                s, e = rng.choice(windows)
                s, e = max(0, s + 2 * rng.randint(-3, 3)), min(duration, e + 2 * rng.randint(-3, 3))
                s, e = min(s, e), max(s, e)
            else:
                s = 2 * rng.randint(0, clips - 1)
                e = min(duration, s + 2 * rng.randint(1, 30))
            preds.append([float(s), float(e), float(f"{rng.random():.4f}")])
        preds.sort(key=lambda p: -p[2])
        num_scores = clips - (1 if rng.random() < 0.01 else 0)  # as the official sample: a few one short
        submission.append({"qid": qid, "query": f"query {qid}", "vid": f"video{qid}", "pred_relevant_windows": preds,
                           "pred_saliency_scores": [round(rng.gauss(0, 1), 4) for _ in range(num_scores)]})
    return submission, ground_truth


def load_data(generate=False, num_queries=1550):
    """(submission, ground truth, expected metrics or None, description)."""
    preds = os.path.join(FIXTURE, "sample_val_preds.jsonl")
    if not generate and os.path.exists(preds) and os.path.exists(GT_PATH):
        with open(os.path.join(FIXTURE, "sample_val_preds_metrics_raw.json")) as f:
            expected = json.load(f)
        return _jsonl(preds), _jsonl(GT_PATH), expected, "official sample predictions, 1,550 val queries (../shared)"
    submission, ground_truth = generate_rows(num_queries)
    return submission, ground_truth, None, f"generated rows of the same shape, {num_queries:,} queries"


def _timed(function):
    wall, cpu = time.perf_counter(), time.process_time()
    result = function()
    return result, time.perf_counter() - wall, time.process_time() - cpu


def measure(repeats=5, workers=8, generate=False, num_queries=1550, threads=1):
    """Run the three measures; returns a dict of figures (see the module docstring)."""
    import torch

    from mmn.evaluation.qvhighlights import eval_submission
    from mmn.evaluation.reference import qvh_eval_submission

    torch.set_num_threads(threads)
    submission, ground_truth, expected, description = load_data(generate, num_queries)
    load_start = os.getloadavg()
    eval_submission(submission, ground_truth)  # warm-up: imports, allocator, first calls
    ours_runs = [_timed(lambda: eval_submission(submission, ground_truth)) for _ in range(repeats)]
    ours = ours_runs[0][0]
    official_1, official_1_wall, official_1_cpu = _timed(lambda: qvh_eval_submission(submission, ground_truth, 1))
    official_n, official_n_wall, _ = _timed(lambda: qvh_eval_submission(submission, ground_truth, workers))
    ours_wall = statistics.median(r[1] for r in ours_runs)
    ours_cpu = statistics.median(r[2] for r in ours_runs)
    same = all(json.dumps(r[0]) == json.dumps(ours) for r in ours_runs) and \
        json.dumps(ours) == json.dumps(official_1) == json.dumps(official_n)
    return {
        "data": description, "queries": len(submission), "threads": threads, "repeats": repeats, "workers": workers,
        "ours_wall_s": ours_wall, "ours_cpu_s": ours_cpu, "ours_wall_s_all": [r[1] for r in ours_runs],
        "official_1_wall_s": official_1_wall, "official_1_cpu_s": official_1_cpu,
        "official_n_wall_s": official_n_wall,
        "speedup_vs_official_1": official_1_wall / ours_wall, "cpu_speedup_vs_official_1": official_1_cpu / ours_cpu,
        "speedup_vs_official_n": official_n_wall / ours_wall, "goal": GOAL,
        "same_numbers": same, "equals_official_file": None if expected is None else json.dumps(ours) == json.dumps(expected),
        "brief": ours["brief"], "load_avg_start": load_start, "load_avg_end": os.getloadavg(),
        "cpus": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__,
    }


def table(result):
    """The figures as a printed table (terminaltables)."""
    from terminaltables import AsciiTable

    rows = [["measure", "wall s", "CPU s", "ours faster (wall)", "(CPU)"],
            ["ours: mmn.evaluation.qvhighlights", f"{result['ours_wall_s']:.3f}", f"{result['ours_cpu_s']:.3f}", "", ""],
            ["official algorithm, 1 process", f"{result['official_1_wall_s']:.2f}", f"{result['official_1_cpu_s']:.2f}",
             f"{result['speedup_vs_official_1']:.1f}x", f"{result['cpu_speedup_vs_official_1']:.1f}x"],
            [f"official algorithm, Pool({result['workers']})", f"{result['official_n_wall_s']:.2f}", "",
             f"{result['speedup_vs_official_n']:.1f}x", ""]]
    same = "yes" if result["same_numbers"] else "NO"
    if result["equals_official_file"] is not None:
        same += ", = sample_val_preds_metrics_raw.json" if result["equals_official_file"] else ", NOT the official file"
    title = f" QVHighlights metrics, {result['queries']:,} queries: same numbers {same} "
    lines = [AsciiTable(rows, title).table,
             f"data: {result['data']}; goal >= {result['goal']:.0f}x the 1-process official (wall): "
             f"{'reached' if result['speedup_vs_official_1'] >= result['goal'] else 'below goal'}; "
             f"load average {result['load_avg_start'][0]:.2f} at the start, {result['load_avg_end'][0]:.2f} at the end "
             f"on {result['cpus']} CPUs; torch threads {result['threads']}"]
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5, help="timed runs of ours (median)")
    parser.add_argument("--workers", type=int, default=8, help="processes of the official Pool run")
    parser.add_argument("--generate", action="store_true", help="generated rows even where ../shared exists")
    parser.add_argument("--queries", type=int, default=1550, help="queries of the generated rows")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--out", default=None, metavar="FILE.json", help="write the figures as JSON")
    args = parser.parse_args(argv)
    result = measure(args.repeats, args.workers, args.generate, args.queries, args.threads)
    print(table(result))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)
    if not result["same_numbers"] or result["equals_official_file"] is False:
        raise SystemExit("the metrics differ between ours and the official algorithm")
    return result


if __name__ == "__main__":
    main()
