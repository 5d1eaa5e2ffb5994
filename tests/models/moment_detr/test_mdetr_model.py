"""Moment-DETR units against independent reference computations (no fixture needed): spans and (g)IoU, the
Hungarian matcher, the losses, the official post-processing's rounding, config checks, and loading an
official-format checkpoint strictly and safely."""
import argparse
import itertools
import pickle
import random
import types

import pytest
import torch

import mmn.modeling.moment_detr  # noqa: F401  (declares MODEL.MOMENT_DETR)
from mmn.config.defaults import get_default_config
from mmn.config.loading import ConfigError
from mmn.modeling.moment_detr import MomentDETR
from mmn.modeling.moment_detr.config import video_input_dim, weight_dict
from mmn.modeling.moment_detr.loss import saliency_hinge_loss
from mmn.modeling.moment_detr.matcher import HungarianMatcher
from mmn.modeling.moment_detr.postprocess import (postprocess_windows, rank_moments, ranked_windows, round_decimals,
                                                  submission_rows)
from mmn.structures import generalized_temporal_iou, span_cxw_to_xx, span_xx_to_cxw, temporal_iou
from mmn.utils.checkpoint import CheckpointError, load_model_weights


def small_cfg(**overrides):
    cfg = get_default_config()
    c = cfg.MODEL.MOMENT_DETR
    c.HIDDEN_DIM, c.NHEADS, c.DIM_FEEDFORWARD, c.NUM_QUERIES = 16, 2, 32, 6
    c.V_FEAT_DIM, c.T_FEAT_DIM, c.MAX_Q_L = 10, 8, 12
    for k, v in overrides.items():
        c[k] = v
    return cfg


def random_batch(batch_size=3, lv=20, lq=7, v_dim=12, t_dim=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    vid_len, txt_len = [lv, lv - 5, lv - 9][:batch_size], [lq, lq - 2, lq - 4][:batch_size]
    src_vid_mask = (torch.arange(lv)[None] < torch.tensor(vid_len)[:, None]).float()
    src_txt_mask = (torch.arange(lq)[None] < torch.tensor(txt_len)[:, None]).float()
    spans = [torch.tensor([[0.3, 0.2]]), torch.tensor([[0.5, 0.4], [0.2, 0.1]]), torch.tensor([[0.7, 0.3]])]
    return {"src_vid": torch.randn(batch_size, lv, v_dim, generator=g) * src_vid_mask[..., None],
            "src_vid_mask": src_vid_mask,
            "src_txt": torch.randn(batch_size, lq, t_dim, generator=g) * src_txt_mask[..., None],
            "src_txt_mask": src_txt_mask, "span_labels": spans[:batch_size],
            "saliency_pos_labels": torch.tensor([[2, 3], [4, 1], [6, 7]])[:batch_size],
            "saliency_neg_labels": torch.tensor([[0, 9], [8, 10], [1, 0]])[:batch_size]}


# ---------------------------------------------------------------------------- spans
def reference_giou(a, b):
    """Plain-Python generalized IoU of two (start, end) pairs."""
    inter = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
    union = (a[1] - a[0]) + (b[1] - b[0]) - inter
    hull = max(a[1], b[1]) - min(a[0], b[0])
    return inter / union - (hull - union) / hull, inter / union


def test_span_conversions_round_trip():
    xx = torch.tensor([[0.0, 1.0], [0.2, 0.4], [0.5, 0.5]])
    cxw = span_xx_to_cxw(xx)
    assert torch.allclose(cxw, torch.tensor([[0.5, 1.0], [0.3, 0.2], [0.5, 0.0]]))
    assert torch.allclose(span_cxw_to_xx(cxw), xx)
    assert span_cxw_to_xx(cxw[None, None]).shape == (1, 1, 3, 2)


def test_temporal_giou_matches_plain_python_pairwise_and_broadcast():
    rng = random.Random(3)
    a = sorted_pairs(rng, 7)
    b = sorted_pairs(rng, 5)
    ta, tb = torch.tensor(a, dtype=torch.float64), torch.tensor(b, dtype=torch.float64)
    giou = generalized_temporal_iou(ta[:, None], tb[None])
    iou, _ = temporal_iou(ta[:, None], tb[None])
    for i, j in itertools.product(range(7), range(5)):
        ref_giou, ref_iou = reference_giou(a[i], b[j])
        assert giou[i, j].item() == pytest.approx(ref_giou, abs=1e-6)
        assert iou[i, j].item() == pytest.approx(ref_iou, abs=1e-12)
    # aligned pairs = the diagonal of the pairwise matrix, bit for bit
    assert torch.equal(generalized_temporal_iou(ta[:5], tb), torch.diagonal(giou[:5]))
    assert generalized_temporal_iou(torch.tensor([0.0, 0.2]), torch.tensor([0.5, 1.0])).item() < 0  # disjoint
    assert generalized_temporal_iou(torch.tensor([0.1, 0.4]), torch.tensor([0.1, 0.4])).item() == 1.0


def sorted_pairs(rng, n):
    return [tuple(sorted((rng.random(), rng.random()))) for _ in range(n)]


# ---------------------------------------------------------------------------- matcher
def test_matcher_costs_equal_the_official_flat_matrix():
    """Batched padded costs = the blocks of the official (B x nq, all targets) matrix with torch.cdist."""
    g = torch.Generator().manual_seed(1)
    logits, spans = torch.randn(2, 3, 6, 2, generator=g), torch.rand(2, 3, 6, 2, generator=g) * 0.5 + 0.1
    labels = [torch.tensor([[0.3, 0.2]]), torch.tensor([[0.5, 0.4], [0.2, 0.1], [0.8, 0.2]]),
              torch.tensor([[0.6, 0.5]])]
    matcher = HungarianMatcher(10.0, 1.0, 4.0)
    _, blocks = matcher(logits, spans, labels, return_costs=True)
    targets = torch.cat(labels)
    for layer in range(2):
        prob = logits[layer].flatten(0, 1).softmax(-1)
        flat = spans[layer].flatten(0, 1)
        giou = generalized_temporal_iou(span_cxw_to_xx(flat)[:, None], span_cxw_to_xx(targets)[None])
        full = 10.0 * torch.cdist(flat, targets, p=1) + 1.0 * -giou + 4.0 * -prob[:, [0] * len(targets)]
        full = full.view(3, 6, -1).split([1, 3, 1], -1)
        for b in range(3):
            assert torch.equal(torch.from_numpy(blocks[layer][b].copy()), full[b][b])


def test_matcher_assignment_is_the_brute_force_minimum():
    g = torch.Generator().manual_seed(2)
    logits, spans = torch.randn(2, 5, 2, generator=g), torch.rand(2, 5, 2, generator=g) * 0.5 + 0.1
    labels = [torch.tensor([[0.3, 0.2], [0.7, 0.3]]), torch.tensor([[0.5, 0.4], [0.2, 0.1], [0.8, 0.2]])]
    matcher = HungarianMatcher()
    indices, blocks = matcher(logits, spans, labels, return_costs=True)
    for (rows, cols), cost in zip(indices, blocks):
        n = cost.shape[1]
        best = min(itertools.permutations(range(5), n), key=lambda qs: sum(cost[q, t] for t, q in enumerate(qs)))
        ours = dict(zip(cols.tolist(), rows.tolist()))
        assert [ours[t] for t in range(n)] == list(best)
        assert rows.tolist() == sorted(rows.tolist())  # query indices ascending, as scipy returns them


# ---------------------------------------------------------------------------- losses
def test_losses_against_a_plain_reference():
    cfg = small_cfg()
    torch.manual_seed(0)
    model = MomentDETR(cfg).eval()
    batch = random_batch()
    with torch.no_grad():
        out = model(batch)
        losses = model.losses(out, batch)
    indices = model.criterion.match(out, batch["span_labels"])[0]
    # span / giou: means over the matched pairs, videos in order, queries ascending
    pairs = [(b, q, t) for b, (qs, ts) in enumerate(indices) for q, t in zip(qs.tolist(), ts.tolist())]
    l1, gious = [], []
    for b, q, t in pairs:
        p, y = out["pred_spans"][b, q].double(), batch["span_labels"][b][t].double()
        l1 += (p - y).abs().tolist()
        gious.append(reference_giou(span_cxw_to_xx(p).tolist(), span_cxw_to_xx(y).tolist())[0])
    assert losses["loss_span"].item() == pytest.approx(sum(l1) / len(l1), abs=1e-6)
    assert losses["loss_giou"].item() == pytest.approx(sum(1 - x for x in gious) / len(gious), abs=1e-6)
    # label: weighted NLL with a PLAIN mean over B x nq (not divided by the summed weights)
    logp = out["pred_logits"].double().log_softmax(-1)
    matched = {(b, q) for b, q, _ in pairs}
    terms = [-(logp[b, q, 0] if (b, q) in matched else 0.1 * logp[b, q, 1]).item()
             for b in range(3) for q in range(cfg.MODEL.MOMENT_DETR.NUM_QUERIES)]
    assert losses["loss_label"].item() == pytest.approx(sum(terms) / len(terms), abs=1e-6)
    top1_fg = sum(out["pred_logits"][b, q].argmax().item() == 0 for b, q, _ in pairs)
    assert losses["class_error"].item() == pytest.approx(100 - 100 * top1_fg / len(pairs), abs=1e-4)
    # saliency hinge over both label columns, / (B x 2) x 2
    s = out["saliency_scores"].double()
    hinge = [max(0.0, 0.2 + s[b, n].item() - s[b, p].item()) for b in range(3)
             for p, n in zip(batch["saliency_pos_labels"][b].tolist(), batch["saliency_neg_labels"][b].tolist())]
    assert losses["loss_saliency"].item() == pytest.approx(sum(hinge) / 6 * 2, abs=1e-6)
    # the total: loss x weight in the official order; aux layer keys get _0
    assert list(losses) == ["loss_span", "loss_giou", "loss_label", "class_error", "loss_saliency", "loss_span_0",
                            "loss_giou_0", "loss_label_0", "class_error_0", "loss"]
    weights = weight_dict(cfg.MODEL.MOMENT_DETR)
    assert losses["loss"].item() == pytest.approx(sum(losses[k].item() * w for k, w in weights.items()), rel=1e-6)


def test_saliency_loss_without_labels_is_zero_and_training_forward_returns_losses():
    torch.manual_seed(0)
    model = MomentDETR(small_cfg()).train()
    batch = random_batch()
    batch.pop("saliency_pos_labels"), batch.pop("saliency_neg_labels")
    losses = model(batch)
    assert losses["loss_saliency"].item() == 0.0
    losses["loss"].backward()
    assert model.span_embed.layers[0].weight.grad is not None
    assert model.txt_position_embed.position_embeddings.weight.grad is None  # unused without USE_TXT_POS
    assert saliency_hinge_loss(torch.tensor([[1.0, 0.0]]), torch.tensor([[0]]), torch.tensor([[1]]), 0.2).item() == 0


def test_no_aux_loss_and_eval_outputs():
    torch.manual_seed(0)
    model = MomentDETR(small_cfg(AUX_LOSS=False, DEC_LAYERS=3)).eval()
    out = model(random_batch())
    assert set(out) == {"pred_logits", "pred_spans", "saliency_scores"}
    assert out["pred_spans"].shape == (3, 6, 2) and out["saliency_scores"].shape == (3, 20)
    assert list(model.losses(out, random_batch())) == ["loss_span", "loss_giou", "loss_label", "class_error",
                                                        "loss_saliency", "loss"]
    as_object = model(types.SimpleNamespace(**random_batch()))  # a batch object with the same attributes
    assert torch.equal(as_object["pred_logits"], out["pred_logits"])


@pytest.mark.parametrize("key, value, words", [("SPAN_LOSS_TYPE", "ce", "SPAN_LOSS_TYPE"),
                                               ("CONTRASTIVE_ALIGN_LOSS", True, "CONTRASTIVE_ALIGN_LOSS"),
                                               ("NHEADS", 3, "multiple of NHEADS"),
                                               ("N_INPUT_PROJ", 0, "N_INPUT_PROJ"),
                                               ("POSITION_EMBEDDING", "learned", "sine")])
def test_impossible_configs_are_refused(key, value, words):
    with pytest.raises(ConfigError, match=words):
        MomentDETR(small_cfg(**{key: value}))


def test_video_input_dim_follows_ctx_mode():
    c = small_cfg().MODEL.MOMENT_DETR
    assert video_input_dim(c) == 12
    c.CTX_MODE = "video"
    assert video_input_dim(c) == 10
    c.CTX_MODE = "tef"
    assert video_input_dim(c) == 2


# ---------------------------------------------------------------------------- post-processing
def test_round_decimals_is_python_formatting():
    g = torch.Generator().manual_seed(5)
    values = torch.cat([torch.rand(2000, generator=g) * 150, torch.rand(2000, generator=g),
                        torch.tensor([0.03125, 0.09375, 0.15625, 37.0, 0.00005, 1.00005, 149.99995])]).float()
    ours = round_decimals(values).tolist()
    assert ours == [float(f"{v:.4f}") for v in values.tolist()]


def test_postprocess_clamps_to_150_and_rounds_half_to_even():
    windows = torch.tensor([[[-1.2, 37.0], [39.0, 151.3], [10.9999, 148.9999]]], dtype=torch.float64)
    assert postprocess_windows(windows).tolist() == [[[0.0, 36.0], [40.0, 150.0], [10.0, 148.0]]]
    # the switch: clamp to the video's own duration (before and after rounding)
    short = postprocess_windows(windows, durations=[127.0], clip_to_duration=True)
    assert short.tolist() == [[[0.0, 36.0], [40.0, 127.0], [10.0, 127.0]]]
    unrounded = postprocess_windows(windows, round_multiple=0)
    assert torch.equal(unrounded, torch.tensor([[[0.0, 37.0], [39.0, 150.0], [10.9999, 148.9999]]]).double())


def test_rank_moments_sorts_stably_by_unrounded_score():
    logits = torch.tensor([[[0.0, 0.0], [1.0, 0.0], [0.0, 0.0], [2.0, 0.0]]])  # queries 0 and 2 tie
    spans = torch.tensor([[[0.5, 0.2], [0.3, 0.1], [0.6, 0.2], [0.2, 0.2]]])
    saliency = torch.tensor([[0.1234567, -2.0, 5.0]])
    ranked = rank_moments({"pred_logits": logits, "pred_spans": spans, "saliency_scores": saliency}, [100.0],
                          torch.tensor([[1.0, 1.0, 0.0]]))
    assert ranked.moments.tolist() == [[[10.0, 30.0], [24.0, 36.0], [40.0, 60.0], [50.0, 70.0]]]  # 25 -> 24
    assert ranked.scores.tolist() == [[0.8808, 0.7311, 0.5, 0.5]]
    assert ranked.saliency_lengths.tolist() == [2]
    assert ranked.saliency[0, :2].tolist() == [torch.tensor(0.1234567).half().item(), -2.0]
    assert torch.isnan(ranked.saliency[0, 2])
    windows, scores = ranked_windows(logits, spans, [100.0])
    assert windows[0, 1].tolist() == [25.0, 35.0] and scores[0, 2].item() == 0.5
    line, = submission_rows(ranked, [{"qid": 7, "query": "a sentence", "vid": "v_1"}])
    assert list(line) == ["qid", "query", "vid", "pred_relevant_windows", "pred_saliency_scores"]
    assert line["pred_relevant_windows"][:2] == [[10.0, 30.0, 0.8808], [24.0, 36.0, 0.7311]]
    assert line["pred_saliency_scores"] == ranked.saliency[0, :2].tolist()  # cut to the video's clips


# ---------------------------------------------------------------------------- checkpoints
def test_official_format_checkpoint_loads_strictly_and_safely(tmp_path):
    """train.py saves {"model", "optimizer", "lr_scheduler", "epoch", "opt"}; with "opt" as a plain dict the
    file loads with weights_only=True and its "model" strictly into a fresh model."""
    cfg = small_cfg()
    torch.manual_seed(0)
    source = MomentDETR(cfg)
    optimizer, scheduler = source.build_optimizer(cfg)
    path = tmp_path / "model_best.ckpt"
    torch.save({"model": source.state_dict(), "optimizer": optimizer.state_dict(),
                "lr_scheduler": scheduler.state_dict(), "epoch": 3,
                "opt": {"hidden_dim": 16, "nheads": 2, "device": "cpu"}}, path)
    data = torch.load(path, map_location="cpu", weights_only=True)
    torch.manual_seed(1)
    target = MomentDETR(cfg)
    load_model_weights(target, data, str(path))
    assert all(torch.equal(v, source.state_dict()[k]) for k, v in target.state_dict().items())
    broken = dict(data, model={k: v for k, v in data["model"].items() if k != "saliency_proj.bias"})
    with pytest.raises(CheckpointError, match="missing saliency_proj.bias"):
        load_model_weights(target, broken, str(path))


def test_official_argparse_opt_needs_an_allow_list(tmp_path):
    """The real official checkpoints hold opt as an argparse.Namespace: refused by weights_only=True, loaded
    once argparse.Namespace alone is allow-listed."""
    path = tmp_path / "official.ckpt"
    torch.save({"model": {"w": torch.zeros(1)}, "epoch": 0,
                "opt": argparse.Namespace(hidden_dim=256, device=torch.device("cpu"))}, path)
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path, weights_only=True)
    with torch.serialization.safe_globals([argparse.Namespace]):
        assert torch.load(path, weights_only=True)["opt"].hidden_dim == 256
