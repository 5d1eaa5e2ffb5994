"""Parity of mmn's Moment-DETR with the official jayleicn/moment_detr on a recorded fixture folder
(the layout of shared/fixtures/mdetr_parity: ``model_init.ckpt``, ``mdetr_expected.pt``; see its README).

Everything is rebuilt from the fixture's own records: the model from ``runs[run].train_opt`` (sizes, layer
counts, dims, max_q_l, dropouts, loss weights), the weights from ``model_init.ckpt`` (strict, weights_only),
the inputs from the recorded batches. ``compare_all(folder)`` returns the rows of the parity table; the
report (tests/mdetr_parity_report.py) prints them, tests/test_mdetr_parity.py asserts them.

Tolerances (README "Comparing"): float tensors |a - b| <= 1e-5 x max(1, |b|); updates (state_t - state_t-1)
within 1e-6; class_error and submission scores within 1e-4; saliency scores within one float16 spacing;
matching indices, padding masks and submission windows exactly. The training step (zero_grad, forward,
backward, clip, AdamW step, StepLR) is written here, as the official ``train_epoch`` runs it, until the
engine's trainer owns it. Dropout: recipe B (``torch.set_rng_state(steps[t].torch_rng_state)`` before each
training forward), which holds because the model draws its masks in the official order and shapes.

Hooks left for the integration (rows marked SKIP until filled): the data section (items and batches from
the fixture's records and npz features: mmn/modeling/moment_detr/data.py) and the metrics of the
submissions (QVHighlights evaluator: mmn/evaluation/qvhighlights.py).
"""
import contextlib
import math
import os
from dataclasses import dataclass
from typing import Optional

import torch

from mmn.config.defaults import get_default_config
from mmn.modeling.moment_detr import MomentDETR
from mmn.modeling.moment_detr.config import video_input_dim
from mmn.modeling.moment_detr.optim import build_moment_detr_optimizer
from mmn.modeling.moment_detr.postprocess import postprocess_windows, rank_moments, ranked_windows
from mmn.utils.checkpoint import load_model_weights

TOL = 1e-5            # float tensors, relative for values above 1
UPDATE_TOL = 1e-6     # state_t - state_{t-1}
SCORE_TOL = 1e-4      # 4-decimal scores, class_error percentages
EXPECTED_FILE = "mdetr_expected.pt"
CHECKPOINT_FILE = "model_init.ckpt"


@dataclass
class Row:
    quantity: str
    diff: Optional[float]   # max |ours - official|; None = not compared (SKIP)
    tolerance: str
    ok: Optional[bool]      # None = SKIP (a hook left for the integration)


# ---------------------------------------------------------------------------- comparisons
def _max_diff(a, b):
    a, b = torch.as_tensor(a).double(), torch.as_tensor(b).double()
    if a.shape != b.shape:
        return math.inf
    return (a - b).abs().max().item() if a.numel() else 0.0


def close_row(name, ours, official, tol=TOL, per_tensor=False):
    """|a - b| <= tol x max(1, |b|) elementwise; ``per_tensor``: |a - b| <= tol x max(1, max |b| of the tensor)."""
    a, b = torch.as_tensor(ours).detach().double(), torch.as_tensor(official).detach().double()
    label = f"{tol:g} x max(1,{'max|b|' if per_tensor else '|b|'})"
    if a.shape != b.shape:
        return Row(f"{name} (shape {tuple(a.shape)} vs {tuple(b.shape)})", math.inf, label, False)
    if not a.numel():
        return Row(name, 0.0, label, True)
    scale = b.abs().max().clamp(min=1) if per_tensor else b.abs().clamp(min=1)
    return Row(name, _max_diff(a, b), label, bool(((a - b).abs() <= tol * scale).all()))


def abs_row(name, ours, official, tol):
    diff = _max_diff(torch.as_tensor(ours).detach(), torch.as_tensor(official).detach())
    return Row(name, diff, f"{tol:g}", diff <= tol + 1e-9)  # slack: 4-decimal values differ by 1e-4 + 1e-13


def exact_row(name, equal, diff=None):
    return Row(name, 0.0 if equal else (math.inf if diff is None else diff), "exact", bool(equal))


def skip_row(name, why):
    return Row(f"{name}: {why}", None, "-", None)


def fp16_row(name, ours, official):
    """Within one float16 spacing: |a - b| <= 2^-10 |b| + 2^-24."""
    a, b = torch.as_tensor(ours).double(), torch.as_tensor(official).double()
    if a.shape != b.shape:
        return Row(f"{name} (shape {tuple(a.shape)} vs {tuple(b.shape)})", math.inf, "1 fp16 spacing", False)
    ok = bool(((a - b).abs() <= b.abs() * 2.0 ** -10 + 2.0 ** -24).all())
    return Row(name, _max_diff(a, b), "1 fp16 spacing", ok)


# ---------------------------------------------------------------------------- fixture and model
def load_expected(folder):
    return torch.load(os.path.join(folder, EXPECTED_FILE), map_location="cpu", weights_only=True)


def load_checkpoint(folder):
    return torch.load(os.path.join(folder, CHECKPOINT_FILE), map_location="cpu", weights_only=True)


def config_from_opt(opt):
    """Our config from the official options ``opt`` (the dict ``build_model`` received): every key of
    MODEL.MOMENT_DETR whose lower-cased name is an official option takes its value."""
    cfg = get_default_config()
    c = cfg.MODEL.MOMENT_DETR
    for key in list(c.keys()):
        if key in ("SOLVER", "POSTPROCESS") or key.lower() not in opt:
            continue
        default = c[key]
        value = opt[key.lower()]
        c[key] = type(default)(value) if isinstance(default, (bool, int, float, str)) else value
    # the official options add the 2 TEF columns to --v_feat_dim (and zero it without "video"), ours do not
    c.V_FEAT_DIM = int(opt["v_feat_dim"]) - (2 if "tef" in opt["ctx_mode"] else 0)
    assert video_input_dim(c) == int(opt["v_feat_dim"]), (c.V_FEAT_DIM, opt["v_feat_dim"])
    c.SOLVER.LR, c.SOLVER.WD, c.SOLVER.LR_DROP = float(opt["lr"]), float(opt["wd"]), int(opt["lr_drop"])
    cfg.SOLVER.MAX_GRAD_NORM = float(opt["grad_clip"])
    return cfg


def build_model(opt, checkpoint):
    """Our model for the official options, with ``checkpoint`` (``{"model": state_dict, ...}``) loaded
    strictly through mmn.utils.checkpoint."""
    model = MomentDETR(config_from_opt(opt))
    load_model_weights(model, checkpoint, "model_init.ckpt")
    return model


def durations_by_qid(expected):
    """qid -> video duration (s): from the fixture's records, or the ``durations`` of a trimmed copy."""
    if "records" in expected:
        return {r["qid"]: r["duration"] for split in expected["records"].values() for r in split}
    return {int(k): v for k, v in expected["durations"].items()}


def metas_by_qid(expected):
    if "records" not in expected:
        return {}
    return {r["qid"]: {"qid": r["qid"], "query": r["query"], "vid": r["vid"]}
            for split in expected["records"].values() for r in split}


# ---------------------------------------------------------------------------- recording our forward
@contextlib.contextmanager
def record_forward(model):
    """Forward hooks on the official module names: every sub-module output of the fixture's ``forward``,
    and the criterion's inputs (the outputs dict) and result (the loss dict)."""
    rec, handles = {}, []

    def keep(name, pick=None):
        def hook(module, args, output):
            value = output if pick is None else pick(args, output)
            rec[name] = value.detach().clone() if torch.is_tensor(value) else value
        return hook

    modules = dict(model.named_modules())
    for i in range(len(model.input_vid_proj)):
        handles.append(modules[f"input_vid_proj.{i}"].register_forward_hook(keep(f"input_vid_proj.{i}")))
    for i in range(len(model.input_txt_proj)):
        handles.append(modules[f"input_txt_proj.{i}"].register_forward_hook(keep(f"input_txt_proj.{i}")))
    handles.append(model.position_embed.register_forward_hook(keep("pos_vid")))
    handles.append(model.transformer.register_forward_hook(keep("key_padding_mask", lambda a, o: a[1])))
    handles.append(model.transformer.register_forward_hook(keep("hs", lambda a, o: o[0])))
    handles.append(model.transformer.register_forward_hook(keep("memory", lambda a, o: o[1])))
    for kind, parts in (("encoder", ("self_attn", "norm1")), ("decoder", ("self_attn", "norm1", "multihead_attn",
                                                                           "norm2"))):
        for i in range(len(getattr(model.transformer, kind).layers)):
            prefix = f"transformer.{kind}.layers.{i}"
            handles.append(modules[prefix].register_forward_hook(keep(f"{prefix}.out")))
            for part in parts:
                pick = (lambda a, o: o[0]) if part.endswith("attn") else None
                handles.append(modules[f"{prefix}.{part}"].register_forward_hook(keep(f"{prefix}.{part}", pick)))
    handles.append(model.criterion.register_forward_hook(keep("criterion_outputs", lambda a, o: a[0])))
    try:
        yield rec
    finally:
        for h in handles:
            h.remove()


FORWARD_PARTS = {"encoder_layers": ("encoder", {"self_attn": "self_attn", "norm1": "norm1", "out": "out"}),
                 "decoder_layers": ("decoder", {"self_attn": "self_attn", "norm1": "norm1",
                                                "cross_attn": "multihead_attn", "norm2": "norm2", "out": "out"})}


def forward_rows(prefix, rec, official):
    """Every recorded sub-module output of the official ``forward`` dict against ours."""
    rows = []
    for key, value in official.items():
        if key in ("input_vid_proj", "input_txt_proj"):
            rows += [close_row(f"{prefix} forward {key}[{i}]", rec[f"{key}.{i}"], v) for i, v in enumerate(value)]
        elif key in FORWARD_PARTS:
            kind, names = FORWARD_PARTS[key]
            for i, layer in enumerate(value):
                for part, v in layer.items():
                    rows.append(close_row(f"{prefix} forward {key}[{i}].{part}",
                                          rec[f"transformer.{kind}.layers.{i}.{names[part]}"], v))
        elif key == "key_padding_mask":
            rows.append(exact_row(f"{prefix} forward key_padding_mask", torch.equal(rec[key], value)))
        else:
            rows.append(close_row(f"{prefix} forward {key}", rec[key], value))
    return rows


def output_rows(prefix, outputs, official):
    rows = [close_row(f"{prefix} outputs {k}", outputs[k], official[k])
            for k in ("pred_logits", "pred_spans", "saliency_scores")]
    aux, official_aux = outputs.get("aux_outputs", []), official.get("aux_outputs", [])
    rows.append(exact_row(f"{prefix} outputs aux layers ({len(official_aux)})", len(aux) == len(official_aux)))
    for i, (a, b) in enumerate(zip(aux, official_aux)):
        rows += [close_row(f"{prefix} outputs aux[{i}] {k}", a[k], b[k]) for k in ("pred_logits", "pred_spans")]
    return rows


def matching_rows(prefix, model, outputs, span_labels, official):
    """Indices exactly and the solved cost blocks, for every matcher call (last layer, then aux layers)."""
    with torch.no_grad():
        detached = {"pred_logits": outputs["pred_logits"].detach(), "pred_spans": outputs["pred_spans"].detach(),
                    "aux_outputs": [{k: v.detach() for k, v in a.items()} for a in outputs.get("aux_outputs", [])]}
        indices, costs = model.criterion.match(detached, span_labels, return_costs=True)
    rows = [exact_row(f"{prefix} matcher calls ({len(official)})", len(indices) == len(official))]
    for call, (ours, our_costs, ref) in enumerate(zip(indices, costs, official)):
        name = "last layer" if call == 0 else f"aux {call - 1}"
        same = len(ours) == len(ref["indices"]) and all(
            torch.equal(q, rq) and torch.equal(t, rt) for (q, t), (rq, rt) in zip(ours, ref["indices"]))
        rows.append(exact_row(f"{prefix} matching indices ({name})", same))
        diffs = [close_row("", torch.from_numpy(c), rc) for c, rc in zip(our_costs, ref["costs"])]
        rows.append(Row(f"{prefix} matching costs ({name})", max(r.diff for r in diffs), diffs[0].tolerance,
                        all(r.ok for r in diffs)))
    return rows


def loss_rows(prefix, losses, official, official_total):
    rows = []
    for key, value in official.items():
        if key == "loss_overall":
            rows.append(close_row(f"{prefix} loss_overall (logged float)", losses["loss"], value))
        elif key.startswith("class_error"):
            rows.append(abs_row(f"{prefix} {key}", losses[key], value, SCORE_TOL))
        else:
            rows.append(close_row(f"{prefix} {key}", losses[key], value))
    ours_keys = [k for k in losses if k != "loss"]
    rows.append(exact_row(f"{prefix} loss terms (official keys and order)",
                          ours_keys == [k for k in official if k != "loss_overall"]))
    rows.append(close_row(f"{prefix} loss_total", losses["loss"], official_total))
    return rows


# ---------------------------------------------------------------------------- post-processing
def submission_rows_compare(prefix, outputs, batch, qids, official_before, official_after, durations, settings):
    """The official rows before post-processing and the submission: windows, scores, saliency."""
    dur = torch.tensor([float(durations[int(q)]) for q in qids])
    rows = [exact_row(f"{prefix} submission qids (order)",
                      [int(r["qid"]) for r in official_after] == [int(q) for q in qids] ==
                      [int(r["qid"]) for r in official_before])]
    windows, scores = ranked_windows(outputs["pred_logits"], outputs["pred_spans"], dur)
    ref_before = torch.tensor([r["pred_relevant_windows"] for r in official_before], dtype=torch.float64)
    rows.append(abs_row(f"{prefix} before post-processing: windows (4 decimals)", windows, ref_before[..., :2],
                        SCORE_TOL))
    rows.append(abs_row(f"{prefix} before post-processing: scores (4 decimals)", scores, ref_before[..., 2], SCORE_TOL))
    ranked = rank_moments(outputs, dur, batch["src_vid_mask"], max_ts_val=float(settings["max_ts_val"]),
                          round_multiple=float(settings["clip_length"]), clip_to_duration=False)
    ref_after = torch.tensor([r["pred_relevant_windows"] for r in official_after], dtype=torch.float64)
    rows.append(exact_row(f"{prefix} submission windows [st, ed] (ranked)",
                          torch.equal(ranked.moments, ref_after[..., :2]), _max_diff(ranked.moments, ref_after[..., :2])))
    rows.append(abs_row(f"{prefix} submission scores", ranked.scores, ref_after[..., 2], SCORE_TOL))
    lengths_ok = ranked.saliency_lengths.tolist() == [len(r["pred_saliency_scores"]) for r in official_after]
    rows.append(exact_row(f"{prefix} submission saliency lengths", lengths_ok))
    if lengths_ok:
        ours = torch.cat([s[:n] for s, n in zip(ranked.saliency, ranked.saliency_lengths.tolist())])
        ref = torch.tensor([v for r in official_after for v in r["pred_saliency_scores"]], dtype=torch.float64)
        rows.append(fp16_row(f"{prefix} submission saliency scores", ours, ref))
    # the post-processing alone, on the official 4-decimal windows: exact
    exact_pp = postprocess_windows(ref_before[..., :2], dur, float(settings["max_ts_val"]),
                                   float(settings["clip_length"]))
    rows.append(exact_row(f"{prefix} post-processing of the official rows", torch.equal(exact_pp, ref_after[..., :2])))
    return rows


def metrics_rows(prefix, official_section):
    """HOOK (integration): the QVHighlights metrics (MR mAP / R1 per range, HL mAP / Hit1) of our submission
    against ``official_section["metrics"]``, exactly, with mmn/evaluation/qvhighlights.py (branch qvh-metrics)."""
    return [skip_row(f"{prefix} metrics exact", "HOOK: QVHighlights evaluator not merged yet")]


def data_rows(folder, expected):
    """HOOK (integration): items and collated batches of the Moment-DETR dataset on the fixture's records and
    npz feature folders (mmn/modeling/moment_detr/data.py, branch qvh-data) against ``eval_init.batches``
    and ``runs[*].train.steps[*].batch`` (src_vid / src_txt exact with numpy normalisation, span labels
    exact, saliency labels from the recorded Python RNG states)."""
    return [skip_row("data: items and batches", "HOOK: Moment-DETR dataset not merged yet")]


# ---------------------------------------------------------------------------- sections
def checkpoint_rows(expected, checkpoint):
    opt = next(iter(expected["runs"].values()))["train_opt"]
    rows = []
    model = build_model(opt, checkpoint)
    state = model.state_dict()
    rows.append(exact_row(f"strict load of model_init.ckpt ({len(state)} tensors, official order)",
                          list(state) == list(checkpoint["model"])))
    seed = expected.get("checkpoint", {}).get("seed")
    if seed is not None:  # official build_model under set_seed(seed): the same draws give the same weights
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            fresh = MomentDETR(config_from_opt(opt)).state_dict()
        same = all(torch.equal(fresh[k], v) for k, v in checkpoint["model"].items())
        rows.append(exact_row(f"initial weights drawn from seed {seed} = model_init.ckpt", same))
    return rows


def batch_for(expected, run, t):
    """The recorded batch of training step t (a run without its own copy shares another run's)."""
    step = expected["runs"][run]["train"]["steps"][t]
    if "batch" in step:
        return step["batch"]
    for other in expected["runs"].values():
        o = other["train"]["steps"][t]
        if "batch" in o and list(o["qids"]) == list(step["qids"]):
            return o["batch"]
    raise KeyError(f"no recorded batch for step {t} of run {run}")


def eval_rows(prefix, model, batch, official, durations, with_forward=True):
    """The eval-mode forward, matching, losses and post-processing of one recorded evaluation batch."""
    model.eval()
    with torch.no_grad(), record_forward(model) as rec:
        outputs = model(batch)
        losses = model.losses(outputs, batch)
    rows = []
    if with_forward and "forward" in official["batches"][0]:
        rows += forward_rows(prefix, rec, official["batches"][0]["forward"])
    first = official["batches"][0]
    rows += output_rows(prefix, outputs, first["outputs"])
    rows += matching_rows(prefix, model, outputs, batch["span_labels"], first["matching"])
    rows += loss_rows(prefix, losses, first["losses"], first["loss_total"])
    if "eval_loss_meters" in official:
        weights = model.criterion.weight_dict
        meters = {k: float(losses["loss"] if k == "loss_overall" else losses[k]) * weights.get(k, 1.0)
                  for k in official["eval_loss_meters"]}
        worst = max(abs(meters[k] - v) / max(1.0, abs(v)) for k, v in official["eval_loss_meters"].items())
        rows.append(Row(f"{prefix} logged eval loss meters (loss x weight)",
                        max(abs(meters[k] - v) for k, v in official["eval_loss_meters"].items()),
                        f"{TOL:g} x max(1,|b|)", worst <= TOL))
    rows += submission_rows_compare(prefix, outputs, batch, first["qids"], official["submission_before_postprocessing"],
                                    official["submission"], durations, official["postprocessor"])
    rows += metrics_rows(prefix, official)
    return rows


def train_rows(expected, run, checkpoint):
    """The recorded training steps of ``run``: forward, matching, losses, gradients, clipping, AdamW, StepLR."""
    record = expected["runs"][run]
    opt = record["train_opt"]
    model = build_model(opt, checkpoint)
    cfg = config_from_opt(opt)
    optimizer, scheduler = build_moment_detr_optimizer(model, cfg)
    rows = [exact_row(f"{run}: loss weights = official weight_dict",
                      model.criterion.weight_dict == {k: float(v) for k, v in record["weight_dict"].items()})]
    previous_ours = {k: v.clone() for k, v in model.state_dict().items()}
    previous_official = checkpoint["model"]
    model.train()
    for t, step in enumerate(record["train"]["steps"]):
        prefix = f"{run} step {t + 1}:"
        batch = batch_for(expected, run, t)
        torch.set_rng_state(step["torch_rng_state"])  # recipe B: the official dropout draws
        with record_forward(model) as rec:
            losses = model(batch)
        if "forward" in step:
            rows += forward_rows(prefix, rec, step["forward"])
        rows += output_rows(prefix, rec["criterion_outputs"], step["outputs"])
        rows += matching_rows(prefix, model, rec["criterion_outputs"], batch["span_labels"], step["matching"])
        rows += loss_rows(prefix, losses, step["losses"], step["loss_total"])
        rows.append(close_row(f"{prefix} lr used", optimizer.param_groups[0]["lr"], step["lr"][0]))
        optimizer.zero_grad()
        losses["loss"].backward()
        if "grads" in step:
            named = dict(model.named_parameters())
            # per tensor: the first decoder layer's self-attention reads zero targets, so its bias gradients
            # are differences of O(100) terms and carry O(1e-5) absolute BLAS-order noise; the official code
            # itself differs from its recording by that much on another CPU (AMD EPYC vs the recording's AVX-512)
            diffs = [close_row(n, named[n].grad, g, per_tensor=True) for n, g in step["grads"].items()]
            rows.append(Row(f"{prefix} gradients before clipping ({len(diffs)} tensors)", max(r.diff for r in diffs),
                            diffs[0].tolerance, all(r.ok for r in diffs)))
            without = sorted(n for n, p in named.items() if p.grad is None)
            rows.append(exact_row(f"{prefix} parameters without gradient ({', '.join(without) or 'none'})",
                                  set(without) == set(named) - set(step["grads"])))
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), step["max_norm"])
        rows.append(close_row(f"{prefix} grad norm before clipping", grad_norm, step["grad_norm"]))
        optimizer.step()
        state = model.state_dict()
        rows.append(_state_row(f"{prefix} weights after AdamW", state, step["state"]))
        diffs = [abs_row(k, state[k] - previous_ours[k], step["state"][k] - previous_official[k], UPDATE_TOL)
                 for k in step["state"]]
        rows.append(Row(f"{prefix} update (state_t - state_t-1)", max(r.diff for r in diffs), f"{UPDATE_TOL:g}",
                        all(r.ok for r in diffs)))
        previous_ours = {k: v.clone() for k, v in state.items()}
        previous_official = step["state"]
    scheduler.step()
    rows.append(close_row(f"{run}: lr after StepLR", optimizer.param_groups[0]["lr"], record["lr_after_epoch"][0]))
    return rows


def _state_row(name, state, official):
    same_keys = list(state) == list(official)
    diffs = [close_row(k, state[k], official[k]) for k in official if k in state]
    return Row(f"{name} ({len(official)} tensors)", max(r.diff for r in diffs) if same_keys else math.inf,
               diffs[0].tolerance, same_keys and all(r.ok for r in diffs))


def inference_rows(expected, run, checkpoint):
    """``start_inference`` on the weights after the run's updates (the official model_e0000.ckpt)."""
    record = expected["runs"][run]
    official = record["inference"]
    weights = {"model": record["train"]["steps"][-1]["state"], "epoch": 0}
    model = build_model(record["inference_opt"], weights)
    batch = dict(expected["eval_init"]["batches"][0]["batch"])
    batch.update(official["batches"][0]["batch"])  # the inference's own saliency samples
    return eval_rows(f"{run} inference:", model, batch, official, durations_by_qid(expected), with_forward=True)


def compare_all(folder):
    """Every row of the parity table for the fixture in ``folder``."""
    torch.set_num_threads(1)
    expected, checkpoint = load_expected(folder), load_checkpoint(folder)
    rows = data_rows(folder, expected)
    rows += checkpoint_rows(expected, checkpoint)
    first_opt = next(iter(expected["runs"].values()))["train_opt"]
    rows += eval_rows("eval_init:", build_model(first_opt, checkpoint), expected["eval_init"]["batches"][0]["batch"],
                      expected["eval_init"], durations_by_qid(expected))
    for run in expected["runs"]:
        rows += train_rows(expected, run, checkpoint)
        rows += inference_rows(expected, run, checkpoint)
    return rows


def format_table(rows):
    width = max(len(r.quantity) for r in rows)
    lines = [f"{'quantity':<{width}} | max abs diff | tolerance            | ok", "-" * (width + 48)]
    for r in rows:
        diff = "-" if r.diff is None else f"{r.diff:.3g}"
        ok = "SKIP" if r.ok is None else ("ok" if r.ok else "FAIL")
        lines.append(f"{r.quantity:<{width}} | {diff:>12} | {r.tolerance:<20} | {ok}")
    return "\n".join(lines)
