"""The parity table of this implementation against a 2D-TAN parity fixture's recorded official outputs:

    python tests/tan_parity_report.py [FIXTURE_DIR]      (default: tests/fixtures/tan_parity)

FIXTURE_DIR is a folder in the form of tests/fixtures/tan_parity (its README): ``config.yaml`` in the
official 2D-TAN YAML form, the data in the official layout of its dataset (Charades-STA txt/csv,
ActivityNet/TACoS JSON), with or without a validation split, ``glove_stub.txt``, the starting weights and
``tan_expected.pt``. Everything is read from the fixture (tests/tan_fixture.py): the splits, the recorded
batches of each update, the evaluations at the official test interval (in updates), the scheduler steps on
the validation loss. Prints one row per quantity (max abs difference and its tolerance); the exit status is
0 only when every row is within its tolerance. The same comparisons as tests/test_tan_parity.py, measured.
"""
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from tan_fixture import DEFAULT_DIR, TOL, TanFixture, expected_orders, replay  # noqa: E402

EXACT = 0.0
DATA_KEYS = ("visual_input", "word_vectors", "map_gt")
BATCH_KEYS = ("vis_input", "word_vectors", "txt_mask", "map_gt")
INTERMEDIATES = ("vis_h", "map_h", "map_mask", "txt_lstm", "txt_last", "txt_h", "fused_h", "map_conv_h", "prediction")


def diff(a, b):
    a, b = torch.as_tensor(a).double(), torch.as_tensor(b).double()
    if a.shape != b.shape:
        return float("inf")
    return (a - b).abs().max().item() if a.numel() else 0.0


def flag(ok):
    return 0.0 if ok else 1.0


def summary_rows(prefix, ours, official):
    rows = [(f"{prefix}: loss", abs(ours["loss"] - official["loss"]), TOL),
            (f"{prefix}: tIoUs and recalls as the config", flag(list(official["tious"]) == list(ours["tious"])
                                                               and list(official["recalls"]) == list(ours["recalls"])),
             EXACT)]
    n_scored = official["n_scored"]
    rows.append((f"{prefix}: candidates with a score > 0", flag(list(ours["n_scored"]) == list(n_scored)), EXACT))
    ranked, tails = 0.0, True
    for q, (s, n) in enumerate(zip(official["sorted_times"], n_scored)):
        s = torch.as_tensor(s, dtype=torch.float64)
        ranked = max(ranked, diff(ours["sorted_times"][q][:n], s[:n]))
        tails &= sorted(torch.as_tensor(ours["sorted_times"][q][n:]).double().tolist()) == sorted(s[n:].tolist())
    rows += [(f"{prefix}: ranked candidates (scored prefix), s", ranked, EXACT),
             (f"{prefix}: zero-score tail equal as a set", flag(tails), EXACT)]
    top = max((diff(o, t) for o, t in zip(ours["top_moments"], official["top_moments"])), default=0.0)
    rows.append((f"{prefix}: moments kept by NMS, s", top if len(ours["top_moments"]) == len(official["top_moments"])
                 else float("inf"), EXACT))
    q = len(official["top_moments"])
    table, ref = torch.as_tensor(ours["table"]).double(), torch.as_tensor(official["table"]).double()
    hits = (table * q).round() - (ref * q).round() if table.shape == ref.shape else torch.tensor([float("inf")])
    rows += [(f"{prefix}: recall hits", hits.abs().max().item(), EXACT),
             (f"{prefix}: recall fractions (float32 mean vs float64)", diff(table, ref), 1e-6),
             (f"{prefix}: mIoU", abs(ours["miou"] - official["miou"]), 1e-9)]
    return rows


def batch_rows(prefix, ours, official):
    value = max(diff(ours[k], official[k]) for k in BATCH_KEYS)
    same_meta = list(ours["duration"]) == list(official["duration"])
    return [(f"{prefix}: collated batch", value if same_meta else float("inf"), EXACT)]


def compare(fx, expected, ours, orders):
    """[(quantity, max abs difference, tolerance)] of our record against the official one."""
    rows = []
    if "config" in expected:
        rows.append(("config.yaml merged into lib/core/config.py = the recorded config",
                     flag(fx.config == expected["config"]), EXACT))
    for split in fx.splits:
        official, mine = expected["data"][split], ours["data"][split]
        rows.append((f"data {split}: queries (video, times, tokens, duration), official order",
                     flag(len(official) == len(mine) and all(
                         (o["video"], list(o["times"]), list(o["tokens"]), o["duration"]) ==
                         (m["video"], list(m["times"]), list(m["tokens"]), m["duration"])
                         for o, m in zip(official, mine))), EXACT))
        for key in DATA_KEYS:
            rows.append((f"data {split}: {key}", max((diff(m[key], o[key]) for m, o in zip(mine, official)), default=0.0),
                         TOL if key == "visual_input" else EXACT))
    ev, ref = ours["eval"], expected["eval"]
    rows += batch_rows("eval", ev["batch"], ref["batch"])
    rows += [(f"eval {key}", diff(ev[key], ref[key]), TOL) for key in INTERMEDIATES[:7]]
    for k, (mine, official) in enumerate(zip(ev["map_conv_layers"], ref["map_conv_layers"])):
        rows.append((f"eval map conv layer {k}: conv_out", diff(mine["conv_out"], official["conv_out"]), TOL))
        rows.append((f"eval map conv layer {k}: masked_weight, padded_mask",
                     max(diff(mine["masked_weight"], official["masked_weight"]),
                         diff(mine["padded_mask"], official["padded_mask"])), EXACT))
    rows += [(f"eval {key}", diff(ev[key], ref[key]), TOL) for key in INTERMEDIATES[7:]]
    p, r = torch.as_tensor(ev["pred_unmasked"]).double(), torch.as_tensor(ref["pred_unmasked"]).double()
    rows.append(("eval pred_unmasked, relative to max(1, |x|)", ((p - r).abs() / r.abs().clamp(min=1)).max().item(), TOL))
    rows.append(("eval joint_prob", diff(ev["joint_prob"], ref["joint_prob"]), TOL))
    rows += summary_rows("eval", ev["summary"], ref["summary"])

    grads, ref_grads = ours["grads_step1"], expected["grads_step1"]
    rows.append(("update 1: gradients before clipping", max(diff(grads[n], ref_grads[n]) for n in ref_grads)
                 if sorted(grads) == sorted(ref_grads) else float("inf"), TOL))
    due = [s["t"] for s in ours["steps"] if s["evals"]]
    rows.append((f"evaluations at updates {due} (test interval {ours['test_interval']})",
                 flag(due == [s["t"] for s in expected["steps"] if s["evals"]]), EXACT))
    for mine, official in zip(ours["steps"], expected["steps"]):
        t = official["t"]
        rows += batch_rows(f"update {t}", mine["batch"], official["batch"])
        rows += [(f"update {t}: loss", abs(mine["loss"] - official["loss"]), TOL),
                 (f"update {t}: grad norm", abs(mine["grad_norm"] - official["grad_norm"]), TOL),
                 (f"update {t}: lr used / next", max(diff(mine["lr"], official["lr"]),
                                                     diff(mine["lr_next"], official["lr_next"])), EXACT)]
        sched = 0.0
        for key, value in official["scheduler"].items():
            ours_value = mine["scheduler"].get(key)
            if isinstance(value, float) and isinstance(ours_value, float):
                sched = max(sched, 0.0 if value == ours_value else abs(value - ours_value))
            else:
                sched = max(sched, flag(value == ours_value))
        rows.append((f"update {t}: scheduler state", sched, TOL))
        rows.append((f"update {t}: weights", max(diff(v, official["state"][n]) for n, v in mine["state"].items())
                     if sorted(mine["state"]) == sorted(official["state"]) else float("inf"), TOL))
        rows.append((f"update {t}: evaluated splits {[e['split'] for e in official['evals']]}",
                     flag([e["split"] for e in mine["evals"]] == [e["split"] for e in official["evals"]]), EXACT))
        for s_mine, s_off in zip(mine["evals"], official["evals"]):
            rows += summary_rows(f"update {t} eval {s_off['split']}", s_mine, s_off)
    rows.append(("updates replayed", flag(len(ours["steps"]) == len(expected["steps"])), EXACT))
    return rows


def print_table(rows, out=None):
    out = out or sys.stdout
    width = max(len(name) for name, _, _ in rows)
    print(f"| {'quantity'.ljust(width)} | max abs diff | tolerance |    |", file=out)
    print(f"|{'-' * (width + 2)}|--------------|-----------|----|", file=out)
    for name, value, tol in rows:
        print(f"| {name.ljust(width)} | {value:12.3g} | {tol:9.0e} | {'ok' if value <= tol else 'NO'} |", file=out)


def main(argv):
    torch.set_num_threads(1)
    fx = TanFixture(argv[1] if len(argv) > 1 else DEFAULT_DIR)
    expected = fx.load_expected()
    cfg = fx.cfg()
    orders = expected_orders(fx, expected, cfg)
    ours = replay(fx, [s["anno_idxs"] for s in expected["steps"]], orders, cfg)
    print(f"fixture {fx.folder}: {fx.dataset} ({fx.format} layout, {os.path.relpath(fx.data_dir, fx.folder)}), "
          f"splits {', '.join(fx.splits)}; {len(expected['steps'])} updates of {fx.train_batch}, test interval "
          f"{ours['test_interval']} updates, EVAL_TRAIN {fx.eval_train}")
    rows = compare(fx, expected, ours, orders)
    print_table(rows)
    failed = [name for name, value, tol in rows if not value <= tol]
    print(f"{len(rows) - len(failed)} of {len(rows)} rows within tolerance" + (f"; outside: {failed}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
