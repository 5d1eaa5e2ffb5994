"""Tables, ratios, slopes and target checks of a benchmark run (see benchmarks/run.py).

``summarise`` turns the raw worker results into the summary written as JSON and the printed tables.
"""
import math

DATASETS = ("charades", "activitynet", "tacos")

# docs/REFERENCE_TIMINGS.md (shared/docs): the official MMN code (MCG-NJU/MMN e694e69) on this machine
# kind, 2 threads, each measure in a fresh process; +-20 % (shared, noisy machines). The training-step
# rows were taken on a loaded machine; Charades-STA's was re-measured quiet (22.7 s = 8.8 forward + 13.8
# backward, not 40.78), ActivityNet's and TACoS's were not: their "x REF" training ratios overstate.
REFERENCE = {
    "charades": dict(eval_s_per_1k=4.4, candidates=136, build_s=5.3, train_videos=5336, train_queries=12404,
                     loader_items_per_s=251, dataset_mem_mb=60, train_batch=8, fwd_s=8.8, bwd_s=13.8,
                     opt_s=0.41, step_s=22.7, train_peak_mb=2234, params_m=121.6),
    "activitynet": dict(eval_s_per_1k=19.8, candidates=1104, build_s=20.6, train_videos=10009,
                        train_queries=37417, loader_items_per_s=117, dataset_mem_mb=655, train_batch=2,
                        fwd_s=27.78, bwd_s=66.18, opt_s=0.50, step_s=94.46, train_peak_mb=3912, params_m=152.2),
    "tacos": dict(eval_s_per_1k=31.0, candidates=2548, build_s=6.8, train_videos=75, train_queries=9790,
                  loader_items_per_s=41, dataset_mem_mb=749, train_batch=1, fwd_s=35.07, bwd_s=66.90,
                  opt_s=0.23, step_s=102.19, train_peak_mb=3376, params_m=121.6),
}
TARGETS = {"eval_speedup": 50.0, "loader_speedup": 10.0, "memory_ratio": 1 / 5, "train_speedup": 1.5,
           "qvh_speedup": 20.0}


def loglog_slope(xs, ys):
    """Least-squares slope of log(y) against log(x); None with fewer than 2 usable points."""
    pts = [(math.log(x), math.log(y)) for x, y in zip(xs, ys) if x and y and x > 0 and y > 0]
    if len(pts) < 2 or len({p[0] for p in pts}) < 2:
        return None
    mx = sum(p[0] for p in pts) / len(pts)
    my = sum(p[1] for p in pts) / len(pts)
    sxx = sum((p[0] - mx) ** 2 for p in pts)
    return sum((p[0] - mx) * (p[1] - my) for p in pts) / sxx


def _fmt(x, digits=2):
    if x is None:
        return "-"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, str):
        return x
    if isinstance(x, int):
        return f"{x:,}"
    if x != 0 and abs(x) < 10 ** -digits:
        return f"{x:.2g}"
    return f"{x:,.{digits}f}"


def _ratio(a, b):
    return a / b if a is not None and b not in (None, 0) else None


def _table(title, rows):
    from terminaltables import AsciiTable

    table = AsciiTable([[str(c) for c in row] for row in rows], title)
    return table.table


def summarise(results, mode_name):
    """Ratios, slopes and target checks from the raw worker results; returns (summary dict, printed text)."""
    names = [n for n in DATASETS if n in results["per_dataset"]]
    per = results["per_dataset"]
    summary = {"eval": {}, "data": {}, "train": {}, "e2e": {}, "qvh": {}, "scaling": {}, "targets": []}
    text = []

    # ---- evaluation
    rows = [["config", "N", "cand./query", "ours s/1k q (queries)", "official s/1k q (queries)", "speed-up",
             "same queries", "REF s/1k", "vs REF", "recalls =", "top-5 ="]]
    for name in names:
        ev = per[name].get("eval") or {}
        if "ours_s_per_1k" not in ev:
            continue
        ref = REFERENCE[name]["eval_s_per_1k"]
        s = {"ours_s_per_1k": ev["ours_s_per_1k"], "baseline_s_per_1k": ev["baseline_s_per_1k"],
             "speedup": ev["speedup"], "speedup_same_queries": ev["speedup_same_queries"],
             "reference_s_per_1k": ref, "speedup_vs_reference": ref / ev["ours_s_per_1k"],
             "baseline_vs_reference": ev["baseline_s_per_1k"] / ref,
             "recalls_identical": ev["recalls_identical"], "top5_identical": ev["top5_identical"]}
        summary["eval"][name] = s
        rows.append([name, ev["num_clips"], ev["candidates_per_query"],
                     f"{ev['ours_s_per_1k']:.3f} ({ev['test_queries']:,})",
                     f"{ev['baseline_s_per_1k']:.2f} ({ev['baseline_queries']:,})",
                     f"{ev['speedup']:.0f}x", f"{ev['speedup_same_queries']:.0f}x", _fmt(ref),
                     f"{s['speedup_vs_reference']:.0f}x", _fmt(ev["recalls_identical"]), _fmt(ev["top5_identical"])])
    text.append(_table(" Evaluation: score fusion + NMS + recall, random score maps ", rows))

    # ---- data
    rows = [["config", "videos/queries", "build s ours", "official", "speed-up", "REF s", "items/s ours", "official",
             "speed-up", "REF", "vs REF", "raw read/s", "items/s cached", "speed-up", "MB ours", "official", "ours/off.", "REF MB", "peak MB ours", "official", "live MB ours"]]
    for name in names:
        d = per[name].get("data") or {}
        ours, base = d.get("ours_1.0") or {}, d.get("baseline_1.0") or {}
        if "build_s" not in ours or "build_s" not in base:
            continue
        ref = REFERENCE[name]
        s = {"build_s_ours": ours["build_s"], "build_s_baseline": base["build_s"],
             "build_speedup": _ratio(base["build_s"], ours["build_s"]), "build_s_reference": ref["build_s"],
             "items_per_s_ours": ours.get("loader_items_per_s"), "items_per_s_baseline": base.get("loader_items_per_s"),
             "loader_speedup": _ratio(ours.get("loader_items_per_s"), base.get("loader_items_per_s")),
             "items_per_s_reference": ref["loader_items_per_s"],
             "loader_vs_reference": _ratio(ours.get("loader_items_per_s"), ref["loader_items_per_s"]),
             "items_per_s_cached": ours.get("loader_cached_items_per_s"), "cache_build_s": ours.get("cache_build_s"),
             "raw_read_items_per_s": ours.get("raw_read_items_per_s"),
             "loader_cached_speedup": _ratio(ours.get("loader_cached_items_per_s"), base.get("loader_items_per_s")),
             "loader_cached_vs_reference": _ratio(ours.get("loader_cached_items_per_s"), ref["loader_items_per_s"]),
             # retained growth (RSS after gc + malloc_trim): what the dataset keeps for the whole run
             "mem_mb_ours": ours["mem_growth_mb"], "mem_mb_baseline": base["mem_growth_mb"],
             "memory_ratio": _ratio(max(ours["mem_growth_mb"], 0.01), base["mem_growth_mb"]),
             "peak_mb_ours": ours.get("peak_growth_mb"), "peak_mb_baseline": base.get("peak_growth_mb"),
             "mem_mb_reference": ref["dataset_mem_mb"],
             "memory_ratio_vs_reference": _ratio(max(ours["mem_growth_mb"], 0.01), ref["dataset_mem_mb"]), "videos": ours["videos"], "queries": ours["queries"],
             "live_mb_ours": ours.get("live_mb")}
        summary["data"][name] = s
        rows.append([name, f"{ours['videos']:,}/{ours['queries']:,}", _fmt(s["build_s_ours"]),
                     _fmt(s["build_s_baseline"]), f"{_fmt(s['build_speedup'], 1)}x", _fmt(ref["build_s"], 1),
                     _fmt(s["items_per_s_ours"], 0), _fmt(s["items_per_s_baseline"], 0),
                     f"{_fmt(s['loader_speedup'], 1)}x", ref["loader_items_per_s"],
                     f"{_fmt(s['loader_vs_reference'], 1)}x", _fmt(s["raw_read_items_per_s"], 0),
                     _fmt(s["items_per_s_cached"], 0),
                     f"{_fmt(s['loader_cached_speedup'], 1)}x", _fmt(s["mem_mb_ours"], 1), _fmt(s["mem_mb_baseline"], 1),
                     _fmt(s["memory_ratio"], 3), ref["dataset_mem_mb"], _fmt(s["peak_mb_ours"], 1),
                     _fmt(s["peak_mb_baseline"], 1), _fmt(s["live_mb_ours"], 1)])
    text.append(_table(" Data: train dataset build, loader (1 process, NUM_WORKERS 0), dataset memory growth ", rows))

    # ---- training
    rows = [["config", "batch vid/sent", "forward s", "backward s", "optim s", "step s", "dense convs s",
             "vs dense", "REF step s", "vs REF", "REF same batch", "peak MB", "REF peak MB", "params M"]]
    for name in names:
        tr = per[name].get("train") or {}
        if "total_s" not in tr:
            continue
        ref = REFERENCE[name]
        same = tr["batch_videos"] == ref["train_batch"]
        ref_step = ref["step_s"] * tr["batch_videos"] / ref["train_batch"]  # per-video scaling when batches differ
        dense = tr["dense"]
        s = {k: tr[k] for k in ("forward_s", "backward_s", "optimizer_s", "total_s", "batch_videos", "tile_rows",
                                "batch_sentences", "peak_rss_mb", "params_m", "timed_steps", "warmup_steps",
                                "loss_max_abs_diff_dense")}
        s.update(reference_step_s=ref["step_s"], reference_batch=ref["train_batch"],
                 speedup_vs_reference=ref_step / tr["total_s"], same_batch_as_reference=same,
                 forward_speedup_vs_reference=ref["fwd_s"] * tr["batch_videos"] / ref["train_batch"] / tr["forward_s"],
                 backward_speedup_vs_reference=ref["bwd_s"] * tr["batch_videos"] / ref["train_batch"] / tr["backward_s"],
                 dense={k: dense[k] for k in ("forward_s", "backward_s", "optimizer_s", "total_s")},
                 speedup_vs_dense=dense["total_s"] / tr["total_s"],
                 dense_speedup_vs_reference=ref_step / dense["total_s"])
        summary["train"][name] = s
        rows.append([name, f"{tr['batch_videos']}/{tr['batch_sentences']}", _fmt(tr["forward_s"]),
                     _fmt(tr["backward_s"]), _fmt(tr["optimizer_s"]), _fmt(tr["total_s"]), _fmt(dense["total_s"]),
                     f"{s['speedup_vs_dense']:.2f}x", _fmt(ref["step_s"]), f"{s['speedup_vs_reference']:.2f}x",
                     _fmt(same), _fmt(tr["peak_rss_mb"], 0), ref["train_peak_mb"], _fmt(tr["params_m"], 1)])
    text.append(_table(" Training step (CPU, BERT frozen, median after warm-up; dense convs = TILE_ROWS 0) ", rows))

    # ---- end-to-end
    rows = [["config", "videos/queries", "ours s", "ours s/1k q", "dense + official evaluate() s/1k q", "speed-up"]]
    for name in names:
        e2e = (per[name].get("train") or {}).get("e2e")
        if not e2e:
            continue
        s = summary["e2e"][name] = dict(e2e, speedup=e2e["official_s"] / e2e["s"])
        rows.append([name, f"{e2e['videos']}/{e2e['queries']}", _fmt(e2e["s"]), _fmt(e2e["s_per_1k_queries"]),
                     _fmt(e2e["official_s_per_1k_queries"]), f"{s['speedup']:.1f}x"])
    text.append(_table(" End-to-end test path on a few test videos (random weights): model + evaluation ", rows))

    # ---- QVHighlights metrics (once, not per config)
    qv = results.get("qvh") or {}
    if "speedup_vs_official_1" in qv:
        summary["qvh"] = {k: qv[k] for k in ("queries", "ours_wall_s", "ours_cpu_s", "official_1_wall_s",
                                             "official_1_cpu_s", "official_n_wall_s", "workers", "speedup_vs_official_1",
                                             "cpu_speedup_vs_official_1", "speedup_vs_official_n", "same_numbers",
                                             "equals_official_file", "data")}
        rows = [["queries", "ours s", "official 1 process s", "speed-up", "(CPU)", f"official Pool({qv['workers']}) s",
                 "speed-up", "same numbers", "= official file"],
                [f"{qv['queries']:,}", _fmt(qv["ours_wall_s"], 3), _fmt(qv["official_1_wall_s"]),
                 f"{qv['speedup_vs_official_1']:.0f}x", f"{qv['cpu_speedup_vs_official_1']:.0f}x",
                 _fmt(qv["official_n_wall_s"]), f"{qv['speedup_vs_official_n']:.0f}x", _fmt(qv["same_numbers"]),
                 "-" if qv["equals_official_file"] is None else _fmt(qv["equals_official_file"])]]
        text.append(_table(" QVHighlights metrics: MR mAP / R1 by length range + HL mAP / HIT@1 (standalone_eval) ", rows))

    # ---- scaling
    ns = [per[name]["eval"]["num_clips"] for name in names if "num_clips" in (per[name].get("eval") or {})]
    sc = summary["scaling"]
    rows = [["measure", "log-log slope vs N (16 -> 64 -> 128)", "log-log slope vs videos / queries"]]

    def across(fn):
        xs, ys = [], []
        for name in names:
            try:
                y = fn(name)
            except (KeyError, TypeError):
                y = None
            ev = per[name].get("eval") or {}
            if y and ev.get("num_clips"):
                xs.append(ev["num_clips"])
                ys.append(y)
        return loglog_slope(xs, ys)

    def per_config_slopes(fn):
        out = {}
        for name in names:
            try:
                pts = fn(name)
            except (KeyError, TypeError):
                pts = None
            if pts:
                out[name] = loglog_slope([p[0] for p in pts], [p[1] for p in pts])
        return out

    entries = [
        ("eval ours s/1k q", lambda nm: per[nm]["eval"]["ours_s_per_1k"],
         lambda nm: [(a, b) for a, b in per[nm]["eval"]["ours_scaling"]]),
        ("eval official s/1k q", lambda nm: per[nm]["eval"]["baseline_s_per_1k"],
         lambda nm: [tuple(per[nm]["eval"]["baseline_half"]),
                     (per[nm]["eval"]["baseline_queries"], per[nm]["eval"]["baseline_s"])]),
        ("candidates / query", lambda nm: per[nm]["eval"]["candidates_per_query"], None),
        ("build s ours", None, lambda nm: [(per[nm]["data"][f"ours_{f}"]["videos"], per[nm]["data"][f"ours_{f}"]["build_only_s"])
                                          for f in (0.25, 1.0)]),
        ("build s official", None, lambda nm: [(per[nm]["data"][f"baseline_{f}"]["videos"],
                                                per[nm]["data"][f"baseline_{f}"]["build_only_s"]) for f in (0.25, 1.0)]),
        ("dataset MB / 1k queries ours", lambda nm: summary["data"][nm]["mem_mb_ours"] / summary["data"][nm]["queries"] * 1000,
         lambda nm: [(per[nm]["data"][f"ours_{f}"]["videos"], per[nm]["data"][f"ours_{f}"]["mem_growth_mb"]) for f in (0.25, 1.0)]),
        ("dataset MB / 1k queries official",
         lambda nm: summary["data"][nm]["mem_mb_baseline"] / summary["data"][nm]["queries"] * 1000,
         lambda nm: [(per[nm]["data"][f"baseline_{f}"]["videos"], per[nm]["data"][f"baseline_{f}"]["mem_growth_mb"])
                     for f in (0.25, 1.0)]),
        ("loader s / item ours", lambda nm: 1 / summary["data"][nm]["items_per_s_ours"], None),
        ("loader s / item official", lambda nm: 1 / summary["data"][nm]["items_per_s_baseline"], None),
        ("train step s / video ours", lambda nm: summary["train"][nm]["total_s"] / summary["train"][nm]["batch_videos"], None),
        ("train step s / video REF", lambda nm: REFERENCE[nm]["step_s"] / REFERENCE[nm]["train_batch"], None),
    ]
    for label, vs_n, vs_count in entries:
        slope_n = across(vs_n) if vs_n else None
        slopes = per_config_slopes(vs_count) if vs_count else {}
        sc[label] = {"vs_N": slope_n, "vs_count": slopes}
        rows.append([label, _fmt(slope_n), ", ".join(f"{k} {_fmt(v)}" for k, v in slopes.items() if v is not None) or "-"])
    text.append(_table(f" Scaling (N = {ns}; configs differ in kernel/layers/dims too; counts: queries for "
                       "eval, train videos for build/memory) ", rows))

    # ---- targets
    rows = [["target", "config", "value", "goal", "reached"]]

    def target(label, name, value, needed, ok):
        summary["targets"].append({"target": label, "dataset": name, "value": value, "needed": needed, "met": ok})
        rows.append([label, name, _fmt(value, 3), needed, "yes" if ok else "below goal"])

    for name, s in summary["eval"].items():
        target("evaluation speed-up vs official (same run)", name, s["speedup"], ">= 50x",
               s["speedup"] >= TARGETS["eval_speedup"] and s["recalls_identical"] and s["top5_identical"])
    for name, s in summary["data"].items():
        for key, label in (("loader_speedup", "loader items/s vs official (same run)"),
                           ("loader_vs_reference", "loader items/s vs REFERENCE_TIMINGS"),
                           ("loader_cached_speedup", "loader items/s, FEATURE_CACHE_DIR on, vs official (same run)"),
                           ("loader_cached_vs_reference", "loader items/s, FEATURE_CACHE_DIR on, vs REFERENCE_TIMINGS")):
            if s.get(key) is not None:
                target(label, name, s[key], ">= 10x", s[key] >= TARGETS["loader_speedup"])
        for key, label in (("memory_ratio", "dataset memory ours/official (same run)"),
                           ("memory_ratio_vs_reference", "dataset memory ours/REFERENCE_TIMINGS")):
            if s.get(key) is not None:
                target(label, name, s[key], "<= 0.2", s[key] <= TARGETS["memory_ratio"])
    for name, s in summary["train"].items():
        target("train step speed-up vs the dense convs (same run)", name, s["speedup_vs_dense"], ">= 1.5x",
               s["speedup_vs_dense"] >= TARGETS["train_speedup"])
        target("train step speed-up vs REFERENCE_TIMINGS" + ("" if name == "charades" else " (REF loaded: overstated)"),
               name, s["speedup_vs_reference"], ">= 1.5x", s["speedup_vs_reference"] >= TARGETS["train_speedup"])
    if summary["qvh"]:
        s = summary["qvh"]
        target("QVHighlights metrics speed-up vs official, 1 process (same run)", "qvhighlights",
               s["speedup_vs_official_1"], ">= 20x",
               s["speedup_vs_official_1"] >= TARGETS["qvh_speedup"] and s["same_numbers"]
               and s["equals_official_file"] is not False)
    text.append(_table(f" Project goals ({mode_name}) ", rows))
    text.append("'below goal' marks a figure under one of the project's goals, not a failed run"
                + ("; --quick sizes are too small to judge the goals" if mode_name == "quick" else ""))
    return summary, "\n".join(text)
