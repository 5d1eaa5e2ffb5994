"""Moment-DETR data parity: our readers, dataset and collate against the batches the official code recorded.

Works on any fixture folder in the layout of ``shared/fixtures/mdetr_parity`` (see its README): for the
untrained evaluation (``eval_init``), each run's training epoch and each run's inference, the items are
rebuilt from the fixture's jsonl records and npz feature folders with the run's recorded options, Python's
``random`` set to the phase's recorded ``py_random_state`` and the items fetched in the recorded order, then
collated into the recorded batch sizes and compared with the recorded ``prepare_batch_inputs`` tensors.

``data_parity_rows(fixture_dir)`` returns ``ParityRow(quantity, max_abs_diff, tolerance, ok)`` rows;
``python tests/parity_tools/mdetr_data.py FIXTURE_DIR`` prints them (exit 1 when one is not ok).

Hard saliency labels come from ``np.argsort`` among clips of equal summed score: its pick is platform
dependent (the fixture README, "Randomness"). A pick that differs from the recorded one but lies, like it,
inside the recorded tie set is counted as "tie, platform-dependent" (named in the row, not a failure); every
other label is compared exactly.
"""
import os
import random
import sys
from typing import NamedTuple

import numpy as np
import torch

FEATURE_TOL = 1e-6    # README "Comparing": exact in numpy float32; a torch-computed norm may differ in the last bit
EXPECTED_FILE = "mdetr_expected.pt"
INPUT_KEYS = ("src_txt", "src_txt_mask", "src_vid", "src_vid_mask")
EXACT_KEYS = ("src_txt_mask", "src_vid_mask")
LABEL_KEYS = ("saliency_pos_labels", "saliency_neg_labels")
TIES_OF = {"saliency_pos_labels": "hard_pos_ties", "saliency_neg_labels": "hard_neg_ties"}


class ParityRow(NamedTuple):
    quantity: str
    max_abs_diff: float
    tolerance: float
    ok: bool


def load_expected(fixture_dir):
    return torch.load(os.path.join(fixture_dir, EXPECTED_FILE), map_location="cpu", weights_only=True)


def build_dataset(fixture_dir, opt, data_path, train=False):
    """Our ``MomentDETRDataset`` of ``data_path`` with the official options ``opt`` (paths relative to the fixture)."""
    from mmn.data.readers import NpzTextFolder, NpzVideoFolders
    from mmn.modeling.moment_detr.data import MomentDETRDataset

    video = NpzVideoFolders([os.path.join(fixture_dir, d) for d in opt["v_feat_dirs"]], max_len=opt["max_v_l"],
                            normalize=not opt.get("no_norm_vfeat", False))
    text = NpzTextFolder(os.path.join(fixture_dir, opt["t_feat_dir"]), max_len=opt["max_q_l"],
                         normalize=not opt.get("no_norm_tfeat", False))
    return MomentDETRDataset(os.path.join(fixture_dir, data_path), video, text, clip_length=opt["clip_length"],
                             max_windows=opt["max_windows"], use_tef="tef" in opt.get("ctx_mode", "video_tef"),
                             txt_drop_ratio=opt.get("txt_drop_ratio", 0) if train else 0)


def rebuild_batches(dataset, py_random_state, order, sizes):
    """Items fetched in ``order`` from Python's RNG at ``py_random_state`` (625 ints), collated into batches of
    ``sizes``; returns (batches, items). The caller's RNG state is restored afterwards."""
    saved = random.getstate()
    try:
        random.setstate((3, tuple(int(x) for x in torch.as_tensor(py_random_state).tolist()), None))
        items = [dataset[int(i)] for i in order]
    finally:
        random.setstate(saved)
    collate, batches, start = dataset.collator(), [], 0
    for size in sizes:
        batches.append(collate(items[start:start + size]))
        start += size
    return batches, items


def tie_sets(record, ctx_l):
    """(hard positive ties, hard negative ties): the relevant clips of top / bottom summed score, clamped."""
    sums = np.sum(np.array(record.saliency_scores), 1)
    clips = np.minimum(np.array(record.relevant_clip_ids), ctx_l - 1)
    return sorted(set(clips[sums == sums.max()].tolist())), sorted(set(clips[sums == sums.min()].tolist()))


def _max_diff(ours, theirs):
    if tuple(ours.shape) != tuple(theirs.shape):
        return float("inf")
    if not ours.numel():
        return 0.0
    return (ours.double() - theirs.double()).abs().max().item()


class _Quantity:
    """The worst difference of one quantity over a phase's batches, with its tie notes."""

    def __init__(self, tolerance):
        self.tolerance, self.diff, self.ties, self.notes = tolerance, 0.0, 0, []

    def add(self, diff):
        self.diff = max(self.diff, diff)


def _compare_labels(quantity, name, ours, theirs, qids, recorded_items):
    """Exact, except a hard pick (or its easy copy when the easy pool is empty) that differs inside the tie set."""
    if tuple(ours.shape) != tuple(theirs.shape):
        quantity.add(float("inf"))
        return
    for row, qid in enumerate(qids):
        item = recorded_items.get(qid)
        for col in range(ours.shape[1]):
            a, b = int(ours[row, col]), int(theirs[row, col])
            if a == b:
                continue
            copies_hard = col >= ours.shape[1] // 2 and item is not None and item["easy_pool"] < ours.shape[1] // 2
            hard = col < ours.shape[1] // 2 or copies_hard
            ties = item[TIES_OF[name]] if item is not None else []
            if hard and a in ties and b in ties:
                quantity.ties += 1
                quantity.notes.append(qid)
            else:
                quantity.add(float(abs(a - b)))


def compare_phase(phase, batches, items, recorded, recorded_items, dataset):
    """Rows of one phase: ``recorded`` = [(qids, batch dict)], ``recorded_items`` = the phase's item records."""
    by_qid = {it["qid"]: it for it in recorded_items}
    quantities = {}

    def q(name, tol):
        return quantities.setdefault(name, _Quantity(tol))

    mismatched_qids = 0
    for ours, (qids, theirs) in zip(batches, recorded):
        mismatched_qids += sum(a != b for a, b in zip(ours.qids, qids)) + abs(len(ours.qids) - len(qids))
        for key in INPUT_KEYS:
            if key in theirs:
                q(key, 0.0 if key in EXACT_KEYS else FEATURE_TOL).add(_max_diff(getattr(ours, key), theirs[key]))
        if "span_labels" in theirs:
            spans = q("span_labels", 0.0)
            if ours.span_labels is None or len(ours.span_labels) != len(theirs["span_labels"]):
                spans.add(float("inf"))
            else:
                for a, b in zip(ours.span_labels, theirs["span_labels"]):
                    spans.add(_max_diff(a, b.get("spans") if isinstance(b, dict) else b))
        for key in LABEL_KEYS:
            if key in theirs:
                mine = getattr(ours, key)
                if mine is None:
                    q(key, 0.0).add(float("inf"))
                else:
                    _compare_labels(q(key, 0.0), key, mine, theirs[key], list(qids), by_qid)
    rows = [ParityRow(f"{phase} qids (order)", float(mismatched_qids), 0.0, mismatched_qids == 0)]
    # per item: the loaded clip count, the easy-negative pool and the hard tie sets, recomputed from the record
    records = {r.qid: r for r in dataset.records}
    item_diffs = 0
    for ours, theirs in zip(items, recorded_items):
        record = records[ours["qid"]]
        pool = len(set(range(ours["ctx_l"])) - set(record.relevant_clip_ids))
        pos_ties, neg_ties = tie_sets(record, ours["ctx_l"])
        item_diffs += sum([ours["qid"] != theirs["qid"], ours["ctx_l"] != theirs["ctx_l"], pool != theirs["easy_pool"],
                           pos_ties != sorted(theirs["hard_pos_ties"]), neg_ties != sorted(theirs["hard_neg_ties"])])
    if recorded_items:
        rows.append(ParityRow(f"{phase} items (qid, ctx_l, easy pool, hard tie sets)", float(item_diffs), 0.0,
                              item_diffs == 0 and len(items) == len(recorded_items)))
    for name, quantity in quantities.items():
        label = f"{phase} {name}"
        if quantity.ties:
            label += (f" ({quantity.ties} hard pick(s) differ inside the recorded tie sets, qids "
                      f"{sorted(set(quantity.notes))}: tie, platform-dependent)")
        rows.append(ParityRow(label, quantity.diff, quantity.tolerance, quantity.diff <= quantity.tolerance))
    return rows


def _phase(fixture_dir, name, opt, data_path, record, recorded, train=False, order=None):
    dataset = build_dataset(fixture_dir, opt, data_path, train=train)
    items_recorded = record.get("items") or []
    if order is None:
        order = record.get("order")
    if order is None:
        order = [it["index"] for it in items_recorded] or list(range(len(dataset)))
    batches, items = rebuild_batches(dataset, record["py_random_state"], order, [len(qids) for qids, _ in recorded])
    return compare_phase(name, batches, items, recorded, items_recorded, dataset)


def data_parity_rows(fixture_dir):
    """Every data row of the fixture (module docstring)."""
    expected = load_expected(fixture_dir)
    runs = expected["runs"]
    first = runs[next(iter(runs))]
    rows = []
    init = expected.get("eval_init")
    if init is not None:
        recorded = [(list(b["qids"]), b["batch"]) for b in init["batches"]]
        rows += _phase(fixture_dir, "eval_init", first["train_opt"], first["train_opt"]["eval_path"], init, recorded)
    for run_name, run in runs.items():
        train = run["train"]
        recorded = []
        for t, step in enumerate(train["steps"]):
            batch = step.get("batch")
            if batch is None:  # "the nodrop run's are identical (asserted)": another run's recording of this step
                batch = next(r["train"]["steps"][t]["batch"] for r in runs.values()
                             if r["train"]["steps"][t].get("batch") is not None)
            recorded.append((list(step["qids"]), batch))
        rows += _phase(fixture_dir, f"train[{run_name}]", run["train_opt"], run["train_opt"]["train_path"], train,
                       recorded, train=True)
        inference = run.get("inference")
        if inference is not None and "py_random_state" in inference:
            opt = run.get("inference_opt") or run["train_opt"]
            recorded = [(list(b["qids"]), b["batch"]) for b in inference["batches"]]
            rows += _phase(fixture_dir, f"inference[{run_name}]", opt, opt["eval_path"], inference, recorded)
    return rows


def format_rows(rows):
    """A plain table: quantity | max abs diff | tolerance | ok."""
    width = max(len(r.quantity) for r in rows)
    lines = [f"{'quantity':<{width}} | max abs diff | tolerance | ok"]
    for r in rows:
        lines.append(f"{r.quantity:<{width}} | {r.max_abs_diff:12.3g} | {r.tolerance:9.1g} | {'yes' if r.ok else 'NO'}")
    return "\n".join(lines)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python tests/parity_tools/mdetr_data.py FIXTURE_DIR", file=sys.stderr)
        return 2
    rows = data_parity_rows(argv[0])
    print(format_rows(rows))
    return 0 if all(r.ok for r in rows) else 1


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    raise SystemExit(main())
