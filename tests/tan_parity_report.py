"""Print the table of max abs differences between this implementation and the official 2D-TAN outputs of the
parity fixture (tests/fixtures/tan_parity): ``python tests/tan_parity_report.py`` from the repository root.

The same comparisons as tests/test_tan_parity.py, measured instead of asserted.
"""
import copy
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from mmn.evaluation import recall_table  # noqa: E402
from mmn.modeling.tan import TAN  # noqa: E402
from mmn.modeling.tan.ranking import rank_candidates, top_moments  # noqa: E402
from tan_fixture import build_model, entry, load_expected, official_to_cfg  # noqa: E402


def diff(a, b):
    a, b = torch.as_tensor(a).double(), torch.as_tensor(b).double()
    return (a - b).abs().max().item() if a.numel() else 0.0


def ranking_rows(summary, joint_prob, dataset, cfg):
    durations = dataset.query_durations()
    times, _, _ = rank_candidates(joint_prob, durations)
    ranked = max(diff(times[q, :n], torch.tensor(s)[:n]) for q, (s, n) in
                 enumerate(zip(summary["sorted_times"], summary["n_scored"])))
    tails = all(sorted(times[q, n:].double().tolist()) == sorted(torch.tensor(s)[n:].tolist())
                for q, (s, n) in enumerate(zip(summary["sorted_times"], summary["n_scored"])))
    moments, _ = top_moments(joint_prob, durations, cfg.TEST.NMS_THRESH, k=max(summary["recalls"]))
    top = max(diff(moments[q, :len(t)], t) for q, t in enumerate(summary["top_moments"]))
    table = recall_table(moments, dataset.query_moments(), summary["tious"], summary["recalls"], strict=True)
    ours = torch.tensor([[table[f"R@{r},IoU@{t:.1f}"] for r in summary["recalls"]] for t in summary["tious"]])
    return [("ranked candidates (scored prefix), s", ranked), ("zero-score tail equal as a set", 0.0 if tails else 1.0),
            ("top-5 moments after NMS, s", top), ("recall table (float32 mean vs float64)", diff(ours, summary["table"])),
            ("mIoU", abs(table["mIoU"] - summary["miou"]))]


def main():
    torch.set_num_threads(1)
    expected = load_expected()
    cfg = official_to_cfg(expected["config"])
    datasets = {s: TAN.build_dataset(cfg, entry(s), is_train=s == "train") for s in ("train", "test")}
    rows = []
    for split, ds in datasets.items():
        items = [ds[k] for k in range(len(ds))]
        for key in ("visual_input", "word_vectors", "map_gt"):
            rows.append((f"data {split}: {key}", max(diff(it[key], o[key]) for it, o in zip(items, expected["data"][split]))))
    model = build_model(cfg).eval()
    test = datasets["test"]
    batch = test.collator()([test[k] for k in range(len(test))])
    with torch.no_grad():
        out, final = model.forward_outputs(batch), model(batch)
    for key in ("vis_h", "map_h", "map_mask", "txt_lstm", "txt_last", "txt_h", "fused_h"):
        rows.append((f"eval {key}", diff(out[key], expected["eval"][key])))
    for k, (y, ref) in enumerate(zip(out["map_conv_layers"], expected["eval"]["map_conv_layers"])):
        rows.append((f"eval map conv layer {k}: conv_out", diff(y, ref["conv_out"])))
        w = model.map_layer.masked_weights()[k]
        rows.append((f"eval map conv layer {k}: masked_weight", diff(w.expand_as(ref["masked_weight"][:, 0]),
                                                                      ref["masked_weight"][:, 0])))
    for key in ("map_conv_h", "pred_unmasked", "prediction"):
        rows.append((f"eval {key}", diff(out[key], expected["eval"][key])))
    rows.append(("eval loss", abs(final["loss"].item() - expected["eval"]["loss"])))
    rows.append(("eval joint_prob", diff(final["joint_prob"], expected["eval"]["joint_prob"][:, 0])))
    rows += [(f"eval {name}", v) for name, v in ranking_rows(expected["eval"]["summary"], final["joint_prob"], test, cfg)]

    model = build_model(cfg).train()
    optimizer, scheduler = model.build_optimizer(cfg)
    for step in expected["steps"]:
        b = datasets["train"].collator()([datasets["train"][k] for k in step["anno_idxs"]])
        probe = copy.deepcopy(model)
        probe(b)["loss"].backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(probe.parameters(), float("inf")).item()
        if step["t"] == 1:
            rows.append(("update 1: gradients before clipping", max(diff(p.grad, expected["grads_step1"][n])
                                                                    for n, p in probe.named_parameters())))
        lr = optimizer.param_groups[0]["lr"]
        result = dict(model.train_step(b, optimizer, 1), grad_norm=grad_norm)
        model.end_epoch(scheduler, {"loss": result["loss"]})
        t = step["t"]
        rows.append((f"update {t}: loss", abs(result["loss"] - step["loss"])))
        rows.append((f"update {t}: grad norm", abs(result["grad_norm"] - step["grad_norm"])))
        rows.append((f"update {t}: lr used / next", max(abs(lr - step["lr"][0]),
                                                        abs(optimizer.param_groups[0]["lr"] - step["lr_next"][0]))))
        state = scheduler.state_dict()
        rows.append((f"update {t}: scheduler state equal", 0.0 if all(state[k] == v for k, v in step["scheduler"].items())
                     else 1.0))
        rows.append((f"update {t}: weights", max(diff(v, step["state"][n]) for n, v in model.state_dict().items())))
        for summary in step["evals"]:
            ds = datasets[summary["split"]]
            with torch.no_grad():
                model.eval()
                o = model(ds.collator()([ds[k] for k in range(len(ds))]))
                model.train()
            rows.append((f"update {t} eval {summary['split']}: loss", abs(o["loss"].item() - summary["loss"])))
            rows += [(f"update {t} eval {summary['split']}: {name}", v)
                     for name, v in ranking_rows(summary, o["joint_prob"], ds, cfg)]
    width = max(len(name) for name, _ in rows)
    print(f"| {'quantity'.ljust(width)} | max abs diff |")
    print(f"|{'-' * (width + 2)}|--------------|")
    for name, value in rows:
        print(f"| {name.ljust(width)} | {value:12.3g} |")


if __name__ == "__main__":
    main()
