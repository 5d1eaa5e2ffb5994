"""QD-DETR parity against a fixture folder recorded from the official code (layout of
``shared/fixtures/qddetr_parity``: README.md, model_init.ckpt, qddetr_expected.pt, data/, features/).

``parity_rows(folder)`` replays everything the fixture recorded with our implementation and returns the
comparison rows; ``tests/qddetr_parity_report.py`` prints them, ``tests/test_qddetr_parity.py`` asserts them.
The model is built from the fixture's own recorded official options (``train_opt``), never from numbers
written here. The replay:

- eval of the starting model on the recorded val batch (``eval_init``): every sub-module output of both
  transformer passes (forward hooks on the official module names), outputs, matching (exact) and its costs,
  each loss term and the three parts of the saliency loss, the eval loss meters, the submission before and
  after post-processing, metrics;
- per recorded run ("drop", "nodrop" here): its recorded training updates, the training step written here as the
  official ``train_epoch`` makes it (forward, criterion, zero_grad, backward, clip_grad_norm_(max_norm), AdamW
  step; StepLR after the epoch), dropout from the recorded CPU generator state before each forward (the
  README's recipe B; our dropout masks are also checked against the recorded ones), then the inference of
  the trained model as ``eval_init``;
- data: our dataset on the fixture's records and features against the recorded batches (``data_rows``).

The model replay reads the recorded batches (the data rows check that ours are the same), so that a data
difference and a model difference show up in their own rows.

Tolerances are the README's ("Comparing"): tensors |a - b| <= 1e-5 x max(1, |b|) (digests and parameter
tables by their derived bounds), matching, submission windows and metrics exact, scores 1e-4, class_error
1e-4, saliency scores within one fp16 spacing plus the fp32 tolerance (see ``submission_rows_cmp``).
"""
import math
import os
import zlib
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch

from mmn.config.defaults import get_default_config
from mmn.evaluation.qvhighlights import eval_submission
from mmn.modeling.moment_detr.loss import saliency_hinge_loss
from mmn.modeling.moment_detr.postprocess import ranked_windows, rank_moments, submission_rows
from mmn.modeling.qd_detr import QDDETR
from mmn.modeling.qd_detr.loss import qd_saliency_parts
from mmn.modeling.qd_detr.transformer import t2v_attention_mask
from mmn.utils.checkpoint import load_model_weights

from .digests import Diff, compare_full, compare_record, compare_table, merge_all

TOL = 1e-5
SCORE_TOL = 1e-4        # 4-decimal scores (README: one sits 9.7e-8 from a rounding boundary)
CLASS_ERROR_TOL = 1e-4  # percentages of a few matched queries
NOT_OPTIONS = {"SOLVER", "POSTPROCESS"}  # node keys that are no official option of that name


@dataclass
class Row:
    name: str
    diff: Diff
    exact: bool = False   # a discrete quantity: any difference fails

    @property
    def ok(self):
        return self.diff.ok


def exact_row(name, equal, note=""):
    return Row(name, Diff(0.0 if equal else 1.0, 0.0 if equal else math.inf, "" if equal else note), exact=True)


# ---------------------------------------------------------------------------------------------- fixture
@dataclass
class Fixture:
    folder: str
    expected: dict
    init_state: dict     # the official starting weights, fp32

    @property
    def digest_index(self):
        return self.expected["digest_index"]


def load_fixture(folder):
    """The fixture's records and its starting checkpoint (float8-stored tensors widened to fp32 exactly)."""
    expected = torch.load(os.path.join(folder, "qddetr_expected.pt"), weights_only=True)
    ckpt = torch.load(os.path.join(folder, expected["checkpoint"]["file"]), weights_only=True)
    return Fixture(folder, expected, {k: v.float() for k, v in ckpt["model"].items()})


def config_from_options(opt, postprocessor=None):
    """Our config for the official options ``opt`` (a recorded ``train_opt``): QD-DETR's options are
    Moment-DETR's, so MODEL.QD_DETR is what Moment-DETR's parity tool makes of them (``config_from_opt``:
    every key from the official option of the same lower-case name, V_FEAT_DIM without the TEF columns,
    SOLVER from lr / wd / lr_drop / grad_clip); POSTPROCESS from the recorded post-processor settings.
    Every option the node names must have been recorded."""
    from helpers.mdetr_parity import config_from_opt

    missing = [k.lower() for k in get_default_config().MODEL.QD_DETR if k not in NOT_OPTIONS and k.lower() not in opt]
    if missing:
        raise KeyError(f"official options {missing} missing from the fixture's recorded options")
    cfg = config_from_opt(opt)
    cfg.MODEL.QD_DETR = cfg.MODEL.MOMENT_DETR.clone()
    if postprocessor is not None:
        node = cfg.MODEL.QD_DETR
        node.POSTPROCESS.MAX_TS_VAL = float(postprocessor["max_ts_val"])
        round_ = "round_multiple" in postprocessor["process_func_names"]
        node.POSTPROCESS.ROUND_MULTIPLE = float(postprocessor["clip_length"]) if round_ else 0.0
    return cfg


def build_model(fixture, opt, state=None):
    """Our QDDETR for the official options ``opt``, loaded strictly with ``state`` (default: the fixture's
    starting weights)."""
    cfg = config_from_options(opt, fixture.expected["eval_init"]["postprocessor"])
    model = QDDETR(cfg)
    load_model_weights(model, {"model": fixture.init_state if state is None else state}, "model_init.ckpt")
    return model, cfg


def step_batch(expected, run, k):
    """The batch of training step ``k`` of ``run`` (a run may omit batches identical to another run's)."""
    step = expected["runs"][run]["train"]["steps"][k]
    if "batch" in step:
        return step["batch"]
    return next(r["train"]["steps"][k]["batch"] for r in expected["runs"].values() if "batch" in r["train"]["steps"][k])


def first_run(expected):
    """The options of the first recorded run (the untrained evaluation is the same in every run)."""
    return expected["runs"][next(iter(expected["runs"]))]["train_opt"]


def mixing_margin(expected, phase, k=None):
    """The recorded count of quirk-1 mask entries, None when the fixture has no such record."""
    value = expected.get("margins", {}).get("t2v_mask_mixing", {}).get(phase)
    return value if k is None or value is None else value[k]


# ---------------------------------------------------------------------------------------------- forward records
@contextmanager
def record_forward(model):
    """Records the sub-module outputs of ``model``'s forward in the fixture's ``forward`` layout (official
    module names; sequence-first inside the transformer)."""
    rec = {"input_vid_proj": [], "input_txt_proj": [], "passes": []}
    hooks = []

    def keep(x):
        return x.detach().clone()

    def on(module, fn, pre=False):
        if pre:
            hooks.append(module.register_forward_pre_hook(lambda m, args: fn(args)))
        else:
            hooks.append(module.register_forward_hook(lambda m, args, out: fn(out)))

    def current():
        return rec["passes"][-1]

    for stream in ("input_vid_proj", "input_txt_proj"):
        for layer in getattr(model, stream):
            on(layer, lambda out, s=stream: rec[s].append(keep(out)))
    on(model.position_embed, lambda out: rec.__setitem__("pos_vid", keep(out)))
    tr = model.transformer

    def start_pass(args):
        src, mask, _, pos, video_length = args
        rec["passes"].append({"src": keep(src), "key_padding_mask": keep(mask), "pos": keep(pos),
                              "video_length": int(video_length), "t2v_layers": [], "encoder_layers": [],
                              "decoder_layers": []})

    def end_pass(out):
        hs, references, memory, memory_global = out
        current().update(hs=keep(hs), references=keep(references), memory=keep(memory),
                         memory_global=keep(memory_global))

    on(tr, start_pass, pre=True)
    on(tr, end_pass)
    for stack in ("t2v", "encoder"):
        layers = tr.t2v_encoder.layers if stack == "t2v" else tr.encoder.layers
        key = f"{stack}_layers"
        for i, layer in enumerate(layers):
            on(layer, lambda args, k=key: current()[k].append({}), pre=True)
            on(layer.self_attn, lambda out, k=key: current()[k][-1].__setitem__("self_attn", keep(out[0])))
            on(layer.norm1, lambda out, k=key: current()[k][-1].__setitem__("norm1", keep(out)))
            on(layer, lambda out, k=key: current()[k][-1].__setitem__("out", keep(out)))
    dec = tr.decoder

    def dec_set(name):
        return lambda out: current()["decoder_layers"][-1].__setitem__(name, keep(out))

    on(dec.ref_point_head, lambda args: current()["decoder_layers"].append({"query_sine_embed": keep(args[0])}), pre=True)
    on(dec.ref_point_head, dec_set("query_pos"))
    on(dec.query_scale, dec_set("query_scale"))
    on(dec.ref_anchor_head, dec_set("ref_anchor_head"))
    on(dec.bbox_embed, dec_set("bbox_embed"))
    for layer in dec.layers:
        on(layer.self_attn, dec_set("self_attn"))
        on(layer.norm1, dec_set("norm1"))
        on(layer.ca_qpos_sine_proj, lambda args: dec_set("query_sine_embed_scaled")(args[0]), pre=True)
        on(layer.cross_attn, dec_set("cross_attn"))
        on(layer.norm2, dec_set("norm2"))
        on(layer, dec_set("out"))
    try:
        yield rec
    finally:
        for h in hooks:
            h.remove()


def forward_rows(prefix, ours, recorded, digest_index):
    """Rows comparing a recorded ``forward`` (possibly partial: the nodrop runs keep memories and hs only)."""
    rows = []
    for stream in ("input_vid_proj", "input_txt_proj"):
        for i, rec in enumerate(recorded.get(stream, [])):
            rows.append(Row(f"{prefix} {stream}[{i}]", compare_record(ours[stream][i], rec, digest_index)))
    if "pos_vid" in recorded:
        rows.append(Row(f"{prefix} pos_vid", compare_record(ours["pos_vid"], recorded["pos_vid"], digest_index)))
    if len(ours["passes"]) != len(recorded["passes"]):
        return rows + [exact_row(f"{prefix} transformer passes", False,
                                 f"{len(ours['passes'])} vs {len(recorded['passes'])}")]
    for p, (mine, rec) in enumerate(zip(ours["passes"], recorded["passes"])):
        name = f"{prefix} pass {'pos' if p == 0 else 'neg'}"
        for key, value in rec.items():
            if key == "key_padding_mask":
                rows.append(exact_row(f"{name} {key}", torch.equal(mine[key], value)))
            elif key == "video_length":
                rows.append(exact_row(f"{name} {key}", mine[key] == value))
            elif key.endswith("_layers"):
                if key == "decoder_layers" and not value:   # the official records the positive pass's only
                    continue
                if len(mine[key]) != len(value):
                    rows.append(exact_row(f"{name} {key}", False, f"{len(mine[key])} layers vs {len(value)}"))
                    continue
                for i, (ml, rl) in enumerate(zip(mine[key], value)):
                    for sub, r in rl.items():
                        rows.append(Row(f"{name} {key[:-7]}[{i}].{sub}", compare_record(ml[sub], r, digest_index)))
            else:
                rows.append(Row(f"{name} {key}", compare_record(mine[key], value, digest_index)))
    return rows


# ---------------------------------------------------------------------------------------------- one batch
def outputs_rows(prefix, outputs, recorded):
    rows = [Row(f"{prefix} outputs.{k}", compare_full(outputs[k], v, TOL))
            for k, v in recorded.items() if k != "aux_outputs"]
    for i, aux in enumerate(recorded.get("aux_outputs", [])):
        rows += [Row(f"{prefix} outputs.aux[{i}].{k}", compare_full(outputs["aux_outputs"][i][k], v, TOL))
                 for k, v in aux.items()]
    return rows


def matching_rows(prefix, model, outputs, span_labels, recorded):
    indices, costs = model.criterion.match(outputs, span_labels, return_costs=True)
    rows = []
    for layer, (ours_i, ours_c, rec) in enumerate(zip(indices, costs, recorded)):
        name = f"{prefix} matching {'last layer' if layer == 0 else f'aux {layer - 1}'}"
        same = all(torch.equal(q, rq) and torch.equal(t, rt) for (q, t), (rq, rt) in zip(ours_i, rec["indices"]))
        rows.append(exact_row(f"{name} indices", same and len(ours_i) == len(rec["indices"])))
        cost = Diff()
        for ours_block, rec_block in zip(ours_c, rec["costs"]):
            cost = cost.merge(compare_full(torch.as_tensor(ours_block), rec_block, TOL))
        rows.append(Row(f"{name} costs", cost))
    if len(indices) != len(recorded):
        rows.append(exact_row(f"{prefix} matcher calls", False, f"{len(indices)} vs {len(recorded)}"))
    return rows


def loss_rows(prefix, model, outputs, batch, record):
    """The criterion's dict, the total and the saliency parts against a recorded batch (``losses``,
    ``loss_total``, ``saliency_terms``); returns (rows, our loss dict)."""
    losses = model.losses(outputs, batch)
    rows = []
    for key, value in record["losses"].items():
        if key == "loss_overall":
            rows.append(Row(f"{prefix} loss_overall", compare_full(losses["loss"].detach(), value, TOL)))
            continue
        tol = CLASS_ERROR_TOL if key.startswith("class_error") else TOL
        rows.append(Row(f"{prefix} {key}", compare_full(losses[key].detach(), value, tol)))
    rows.append(Row(f"{prefix} loss_total", compare_full(losses["loss"].detach(), record["loss_total"], TOL)))
    hinge = saliency_hinge_loss(outputs["saliency_scores"], batch["saliency_pos_labels"],
                                batch["saliency_neg_labels"], model.criterion.saliency_margin)
    parts = qd_saliency_parts(outputs, batch["saliency_all_labels"], hinge)
    terms = record["saliency_terms"]
    for key in ("hinge", "rank_contrastive", "neg_pair"):
        rows.append(Row(f"{prefix} saliency {key}", compare_full(parts[key].detach(), terms[key], TOL)))
    active = [t is not None for t in terms["rank_contrastive_terms"]]
    rows.append(exact_row(f"{prefix} saliency rank thresholds with a positive",
                          parts["rank_contrastive_active"].tolist() == active))
    recorded_terms = torch.stack([t if t is not None else torch.zeros(()) for t in terms["rank_contrastive_terms"]])
    rows.append(Row(f"{prefix} saliency rank_contrastive per threshold",
                    compare_full(parts["rank_contrastive_terms"].detach(), recorded_terms, TOL)))
    summed = (parts["hinge"] + parts["rank_contrastive"]) + parts["neg_pair"]
    rows.append(Row(f"{prefix} saliency (hinge + rank) + neg = loss_saliency",
                    compare_full(summed.detach(), losses["loss_saliency"].detach(), 1e-6)))
    return rows, losses


def t2v_mixing_count(batch, nhead):
    """How many (video, head, clip, token) entries the official T2V mask (quirk 1) masks that the video's own
    key padding leaves visible: the README's ``t2v_mask_mixing``."""
    video_pad = batch["src_vid_mask"] == 0
    text_pad = batch["src_txt_mask"] == 0
    mask = t2v_attention_mask(video_pad, text_pad, nhead).view(video_pad.shape[0], nhead, *video_pad.shape[1:],
                                                               text_pad.shape[1])
    return int((mask & ~text_pad[:, None, None, :]).sum())


# ---------------------------------------------------------------------------------------------- evaluation
def submission_rows_cmp(prefix, ours, recorded, before=False):
    """Submission rows: order (qids), windows ([st, ed] exact after post-processing; before it, 4-decimal
    values within one rounding step plus the tensor tolerance), scores 1e-4, saliency within one fp16
    spacing plus the fp32 tolerance."""
    if [r["qid"] for r in ours] != [r["qid"] for r in recorded]:
        return [exact_row(f"{prefix} rows (qid order)", False)]
    w_diff, s_diff, sal = Diff(), Diff(), Diff()
    exact = True
    for mine, rec in zip(ours, recorded):
        a, b = torch.tensor(mine["pred_relevant_windows"], dtype=torch.float64), \
            torch.tensor(rec["pred_relevant_windows"], dtype=torch.float64)
        if a.shape != b.shape:
            return [exact_row(f"{prefix} windows", False, f"shape {tuple(a.shape)} vs {tuple(b.shape)}")]
        if before:
            d = (a[:, :2] - b[:, :2]).abs()
            w_diff = w_diff.merge(Diff(d.max().item(), (d / (1e-4 + TOL * b[:, :2].abs())).max().item()))
        else:
            exact &= torch.equal(a[:, :2], b[:, :2])
            w_diff = w_diff.merge(Diff((a[:, :2] - b[:, :2]).abs().max().item(), 0.0))
        d = (a[:, 2] - b[:, 2]).abs()
        s_diff = s_diff.merge(Diff(d.max().item(), d.max().item() / SCORE_TOL))
        x, y = torch.tensor(mine["pred_saliency_scores"]), torch.tensor(rec["pred_saliency_scores"])
        if x.shape != y.shape:
            return [exact_row(f"{prefix} saliency length", False)]
        d = (x - y).abs().double()
        # one fp16 spacing (the README's rule) on top of the fp32 tolerance: near 0 the fp32 scores may differ
        # by up to 1e-5 absolute, several fp16 spacings there (eval_init has a score of -1.65e-4 whose fp32
        # values differ by 2.5e-7 = 2 spacings)
        bound = 2.0 ** -10 * y.abs().double() + 2.0 ** -24 + TOL * y.abs().double().clamp(min=1)
        sal = sal.merge(Diff(d.max().item(), (d / bound).max().item()))
    rows = [exact_row(f"{prefix} rows (qid order)", True)]
    if before:
        rows.append(Row(f"{prefix} windows (4 decimals), s", w_diff))
    else:
        rows.append(Row(f"{prefix} windows [st, ed] (exact), s", Diff(w_diff.max_abs, 0.0 if exact else math.inf),
                        exact=True))
    rows += [Row(f"{prefix} window scores", s_diff), Row(f"{prefix} saliency scores (fp16)", sal)]
    return rows


def metrics_rows(prefix, submission, records, recorded):
    """The metrics of our submission (``mmn.evaluation.qvhighlights.eval_submission``, the official
    ``standalone_eval``) against the official ones: the whole result dict, exactly."""
    metrics = eval_submission(submission, records)
    return [exact_row(f"{prefix} metrics ({len(recorded['brief'])} brief keys, all tables)", metrics == recorded)]


def eval_rows(prefix, model, cfg, batch, phase, records, digest_index, record_hooks=False):
    """Evaluation of ``model`` on one recorded batch (``phase``: ``eval_init`` or a run's ``inference``)."""
    model.eval()
    rec_batch = phase["batches"][0]
    rows = []
    with torch.no_grad():
        # with the negative pass, as the official evaluation (its loss log reads it)
        if record_hooks:
            with record_forward(model) as fwd:
                outputs = model.forward_outputs(batch, negative=True)
            rows += forward_rows(f"{prefix} forward", fwd, rec_batch["forward"], digest_index)
        else:
            outputs = model.forward_outputs(batch, negative=True)
        rows += outputs_rows(prefix, outputs, rec_batch["outputs"])
        rows += matching_rows(prefix, model, outputs, batch["span_labels"], rec_batch["matching"])
        loss_part, losses = loss_rows(prefix, model, outputs, batch, rec_batch)
        rows += loss_part
    weights = model.criterion.weight_dict
    meters = {k: float(v) * weights[k] if k in weights else float(v) for k, v in losses.items() if k != "loss"}
    meters["loss_overall"] = float(losses["loss"])
    rows.append(Row(f"{prefix} eval loss meters", merge_all(
        compare_full(torch.tensor(meters[k]), torch.tensor(v), CLASS_ERROR_TOL if "class_error" in k else TOL)
        for k, v in phase["eval_loss_meters"].items())))
    by_qid = {r["qid"]: r for r in records}
    metas = [by_qid[q] for q in rec_batch["qids"]]
    durations = torch.tensor([float(m["duration"]) for m in metas])
    windows, scores = ranked_windows(outputs["pred_logits"], outputs["pred_spans"], durations)
    pp = cfg.MODEL.QD_DETR.POSTPROCESS
    ranked = rank_moments(outputs, durations, batch["src_vid_mask"], max_ts_val=pp.MAX_TS_VAL,
                          round_multiple=pp.ROUND_MULTIPLE, clip_to_duration=pp.CLIP_TO_DURATION)
    submission = submission_rows(ranked, metas)
    before = [dict(row, pred_relevant_windows=torch.cat([w, s[:, None]], 1).tolist())
              for row, w, s in zip(submission, windows, scores)]
    rows += submission_rows_cmp(f"{prefix} before post-processing", before, phase["submission_before_postprocessing"],
                                before=True)
    rows += submission_rows_cmp(f"{prefix} submission", submission, phase["submission"])
    rows += metrics_rows(prefix, submission, records, phase["metrics"])
    return rows


# ---------------------------------------------------------------------------------------------- training
@contextmanager
def record_dropout():
    """Our dropout masks in call order (every call with 0 < p < 1 in training), without touching the random
    stream: the mask a call draws is replayed from the generator state before it."""
    import torch.nn.functional as F

    calls, original = [], F.dropout

    def wrapped(x, p=0.5, training=True, inplace=False):
        if training and 0 < p < 1:
            state = torch.get_rng_state()
            calls.append((list(x.shape), p, torch.empty(x.shape).bernoulli_(1 - p).bool()))
            torch.set_rng_state(state)
        return original(x, p, training, inplace)

    F.dropout = wrapped
    try:
        yield calls
    finally:
        F.dropout = original


def recorded_mask(entry):
    bits = np.frombuffer(zlib.decompress(entry["bits_zlib"].numpy().tobytes()), np.uint8)
    return torch.from_numpy(np.unpackbits(bits, count=int(np.prod(entry["shape"]))).reshape(entry["shape"]).astype(bool))


def dropout_row(prefix, calls, recorded):
    if len(calls) != len(recorded):
        return exact_row(f"{prefix} dropout masks", False, f"{len(calls)} calls vs {len(recorded)}")
    bad = [r["name"] for (shape, p, mask), r in zip(calls, recorded)
           if shape != list(r["shape"]) or abs(p - r["p"]) > 0 or not torch.equal(mask, recorded_mask(r))]
    return exact_row(f"{prefix} dropout masks ({len(recorded)} calls: order, shape, p, bits)", not bad,
                     f"differ: {bad[:3]}")


def train_rows(fixture, run):
    """The run's three training updates and its inference, replayed (module docstring)."""
    exp = fixture.expected
    rec_run = exp["runs"][run]
    model, cfg = build_model(fixture, rec_run["train_opt"])
    di = fixture.digest_index
    rows = [exact_row(f"{run} weight_dict", model.criterion.weight_dict == rec_run["weight_dict"])]
    optimizer, scheduler = model.build_optimizer(cfg)
    max_norm = cfg.SOLVER.MAX_GRAD_NORM
    meters = {}
    for k, step in enumerate(rec_run["train"]["steps"]):
        prefix = f"{run} step {step['t']}"
        batch = step_batch(exp, run, k)
        model.train()
        rows.append(Row(f"{prefix} lr", compare_full(torch.tensor([g["lr"] for g in optimizer.param_groups]),
                                                     torch.tensor(step["lr"]), TOL)))
        torch.set_rng_state(step["torch_rng_state"])
        with record_dropout() as calls:
            if "forward" in step:
                with record_forward(model) as fwd:
                    outputs = model.forward_outputs(batch)
                rows += forward_rows(f"{prefix} forward", fwd, step["forward"], di)
            else:
                outputs = model.forward_outputs(batch)
        rows.append(dropout_row(prefix, calls, step["dropout"]))
        rows += outputs_rows(prefix, outputs, step["outputs"])
        rows += matching_rows(prefix, model, outputs, batch["span_labels"], step["matching"])
        if mixing_margin(exp, "train", k) is not None:
            rows.append(exact_row(f"{prefix} T2V mask entries mixing videos (quirk 1)",
                                  t2v_mixing_count(batch, model.transformer.nhead) == mixing_margin(exp, "train", k)))
        part, losses = loss_rows(prefix, model, outputs, batch, step)
        rows += part
        for key, value in losses.items():
            w = model.criterion.weight_dict.get(key)
            name = "loss_overall" if key == "loss" else key
            meters.setdefault(name, []).append(float(value.detach()) * (w if w is not None else 1.0))
        # the official train_epoch step (train.py:70-75)
        optimizer.zero_grad()
        losses["loss"].backward()
        if "grads" in step:
            grads = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
            rows.append(Row(f"{prefix} gradients before clipping ({len(grads)} tensors)",
                            compare_table(grads, step["grads"], di)))
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)
        rows.append(Row(f"{prefix} grad norm before clipping", compare_full(grad_norm, step["grad_norm"], TOL)))
        optimizer.step()
        rows.append(Row(f"{prefix} weights after the update", compare_table(model.state_dict(), step["state"], di)))
    scheduler.step()
    rows.append(Row(f"{run} lr after the epoch", compare_full(torch.tensor([g["lr"] for g in optimizer.param_groups]),
                                                               torch.tensor(rec_run["lr_after_epoch"]), TOL)))
    scalars = {tag[len("Train/"):]: value for r, tag, value, _ in exp.get("tensorboard", [])
               if r == run and tag.startswith("Train/")}
    ours = {k: sum(v) / len(v) for k, v in meters.items()}
    ours["lr"] = rec_run["train"]["steps"][0]["lr"][0]
    if scalars:
        rows.append(Row(f"{run} logged training means (Train/*)", merge_all(
            compare_full(torch.tensor(ours[k]), torch.tensor(v), CLASS_ERROR_TOL if "class_error" in k else TOL)
            for k, v in scalars.items())))
    # inference of the trained model (start_inference on model_e0000.ckpt: the state after step 3)
    inference = rec_run.get("inference")
    if inference is None:
        return rows
    batch = dict(exp["eval_init"]["batches"][0]["batch"], **inference["batches"][0]["batch"])
    rows += eval_rows(f"{run} inference", model, cfg, batch, inference, exp["records"]["val"], di)
    return rows


# ---------------------------------------------------------------------------------------------- data
def _from_parity_row(row):
    if row.tolerance > 0:
        return Row(row.quantity, Diff(row.max_abs_diff, row.max_abs_diff / row.tolerance))
    return Row(row.quantity, Diff(row.max_abs_diff, 0.0 if row.ok else math.inf), exact=True)


def data_rows(fixture):
    """Our dataset (Moment-DETR's + ``saliency_all_labels``) on the fixture's records and features against
    the recorded batches, phase by phase: items fetched in the recorded order from the recorded Python RNG
    state, collated into the recorded batch sizes (Moment-DETR's data parity tool: inputs within 1e-6, span
    and saliency labels exact, hard picks allowed to differ inside the recorded tie sets); here also the
    ``saliency_all_labels`` rows (exact) and their lengths (``label_len``)."""
    from mmn.modeling.qd_detr.data import QDDETRDataset

    from .mdetr_data import build_dataset, compare_phase, rebuild_batches

    exp = fixture.expected
    runs = exp["runs"]
    phases = [("eval_init", first_run(exp), "eval_path", exp["eval_init"], None, False,
               [(list(b["qids"]), b["batch"]) for b in exp["eval_init"]["batches"]])]
    for run, rec in runs.items():
        steps = [(list(st["qids"]), step_batch(exp, run, k)) for k, st in enumerate(rec["train"]["steps"])]
        phases.append((f"train[{run}]", rec["train_opt"], "train_path", rec["train"], rec["train"]["order"], True,
                       steps))
        inf = rec.get("inference")
        if inf is not None:
            phases.append((f"inference[{run}]", rec.get("inference_opt", rec["train_opt"]), "eval_path", inf, None,
                           False, [(list(b["qids"]), b["batch"]) for b in inf["batches"]]))
    rows = []
    for name, opt, path_key, record, order, train, recorded in phases:
        dataset = QDDETRDataset.from_moment_detr(build_dataset(fixture.folder, opt, opt[path_key], train=train))
        if order is None:
            order = [it["index"] for it in record["items"]]
        batches, items = rebuild_batches(dataset, record["py_random_state"], order, [len(q) for q, _ in recorded])
        rows += [_from_parity_row(r) for r in compare_phase(name, batches, items, recorded, record["items"], dataset)]
        lengths = [len(it["saliency_all_labels"]) for it in items] == [it["label_len"] for it in record["items"]]
        rows.append(exact_row(f"{name} saliency_all_labels row lengths (label_len)", lengths))
        labelled = [(ours, theirs) for ours, (_, theirs) in zip(batches, recorded) if "saliency_all_labels" in theirs]
        if labelled:
            diff = merge_all(compare_full(ours.saliency_all_labels, theirs["saliency_all_labels"], 0.0)
                             for ours, theirs in labelled)
            rows.append(Row(f"{name} saliency_all_labels", Diff(diff.max_abs, 0.0 if diff.max_abs == 0 else math.inf),
                            exact=True))
    return rows


# ---------------------------------------------------------------------------------------------- all
def parity_rows(folder):
    """Every comparison of the fixture in ``folder`` (fp32, one thread, deterministic algorithms)."""
    torch.set_num_threads(1)
    fixture = load_fixture(folder)
    exp = fixture.expected
    rows = data_rows(fixture)
    model, cfg = build_model(fixture, first_run(exp))
    batch = exp["eval_init"]["batches"][0]["batch"]
    if mixing_margin(exp, "eval") is not None:
        rows.append(exact_row("eval T2V mask entries mixing videos (quirk 1)",
                              t2v_mixing_count(batch, model.transformer.nhead) == mixing_margin(exp, "eval")))
    rows += eval_rows("eval_init", model, cfg, batch, exp["eval_init"], exp["records"]["val"],
                      fixture.digest_index, record_hooks=True)
    for run in exp["runs"]:
        rows += train_rows(fixture, run)
    return rows


GROUPS = (  # (label, substrings of the row names), first match wins
    ("data: batches, labels, items from our dataset", ("qids", "items (", "src_", "span_labels", "_labels")),
    ("quirk 1 count, weight_dict", ("mixing videos", "weight_dict")),
    ("sub-module outputs (digests), both passes", (" forward ",)),
    ("model outputs (logits, spans, saliency, neg saliency, aux)", (" outputs.",)),
    ("matching indices", ("indices",)),
    ("matching costs", ("costs",)),
    ("submission before post-processing: windows, scores, saliency", ("before post-processing",)),
    ("submission rows and windows [st, ed]", ("submission windows", "rows (qid order)")),
    ("submission scores", ("submission window scores",)),
    ("submission saliency (fp16)", ("submission saliency",)),
    ("metrics", ("metrics",)),
    ("saliency parts (hinge, rank per threshold, neg pair)", (" saliency ",)),
    ("loss terms, totals, logged means", ("loss", "class_error", "logged")),
    ("dropout masks (recipe B)", ("dropout masks",)),
    ("gradients before clipping (tables)", ("gradients",)),
    ("grad norms", ("grad norm",)),
    ("weights after each update (tables)", ("weights after",)),
    ("learning rates", (" lr",)),
)


def summarize(rows):
    """Rows merged by kind of quantity (``GROUPS``): one row per kind, its worst difference and ratio."""
    merged = {}
    for r in rows:
        label = next((g for g, needles in GROUPS if any(n in r.name for n in needles)), r.name)
        count, diff, exact = merged.get(label, (0, Diff(), True))
        merged[label] = (count + 1, diff.merge(r.diff), exact and r.exact)
    return [Row(f"{label} ({count})", diff, exact) for label, (count, diff, exact) in merged.items()]


def format_table(rows):
    """quantity | max abs diff (of the values compared one by one: full tensors, and a digest's samples and
    extremes) | diff / tolerance (the worst over every statistic compared; "exact" for discrete quantities
    that matched) | status."""
    width = max(len(r.name) for r in rows)
    lines = [f"{'quantity':<{width}} | {'max abs diff':>12} | {'diff/tol':>9} | status",
             "-" * (width + 40)]
    for r in rows:
        status = "ok" if r.ok else "FAIL"
        ratio = "exact" if r.exact and r.ok else f"{r.diff.ratio:9.3g}"
        note = f"  {r.diff.note}" if r.diff.note else ""
        lines.append(f"{r.name:<{width}} | {r.diff.max_abs:12.3g} | {ratio:>9} | {status}{note}")
    return "\n".join(lines)
