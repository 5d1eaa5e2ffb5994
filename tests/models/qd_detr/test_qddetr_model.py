"""QD-DETR (mmn/modeling/qd_detr) on a fresh clone: the official initialisation and forwards against the small
copy of the parity fixture (tests/fixtures/qddetr_parity, made by tests/fixtures/make_qddetr_fixture.py), and
the official quirks against independent reference computations."""
import math
import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from helpers.paths import FIXTURES_DIR
from mmn.config.loading import ConfigError
from mmn.config.defaults import get_default_config
from mmn.modeling.qd_detr import QDDETR
from mmn.modeling.qd_detr.data import QDDETRCollator, saliency_all_labels
from mmn.modeling.qd_detr.loss import neg_pair_loss, rank_contrastive_loss
from mmn.modeling.qd_detr.transformer import T2VEncoderLayer, anchor_sine_embedding, t2v_attention_mask

SMALL = os.path.join(FIXTURES_DIR, "qddetr_parity", "qddetr_small.pt")
TOL = 1e-5


@pytest.fixture(scope="module")
def small():
    return torch.load(SMALL, weights_only=True)


def make_cfg(options=None, **overrides):
    """Our config for the fixture's recorded official options (or the defaults), plus node overrides."""
    cfg = get_default_config()
    c = cfg.MODEL.QD_DETR
    if options is not None:
        for key in ("hidden_dim", "nheads", "enc_layers", "dec_layers", "dim_feedforward", "num_queries",
                    "input_dropout", "dropout", "t_feat_dim", "max_q_l", "n_input_proj", "ctx_mode"):
            c[key.upper()] = options[key]
        c.V_FEAT_DIM = options["v_feat_dim"] - 2  # the official options count the 2 TEF columns
    for key, value in overrides.items():
        c[key] = value
    return cfg


def official_init(small, options=None):
    """Our model built under the official seed, its large tensors rounded to float8 as the fixture stores them."""
    options = options or small["options"]
    torch.manual_seed(options["seed"])
    model = QDDETR(make_cfg(options))
    full_max = small["init"]["full_max"]
    with torch.no_grad():
        for p in model.state_dict().values():
            if p.numel() > full_max:
                p.copy_(p.to(torch.float8_e4m3fn).float())
    return model


def close(a, b, tol=TOL):
    return bool(((a - b).abs() <= tol * b.abs().clamp(min=1)).all())


def check_outputs(out, official):
    for key in ("pred_logits", "pred_spans", "saliency_scores", "saliency_scores_neg"):
        assert close(out[key], official[key]), key
    for ours, theirs in zip(out["aux_outputs"], official["aux_outputs"]):
        assert close(ours["pred_logits"], theirs["pred_logits"]) and close(ours["pred_spans"], theirs["pred_spans"])


# ---------------------------------------------------------------------------------------------- official numbers
def test_seed_gives_the_official_initial_weights(small):
    """Same construction order as the official build_model: the seed gives the official weights bit for bit."""
    torch.manual_seed(small["options"]["seed"])
    state = QDDETR(make_cfg(small["options"])).state_dict()
    assert list(state) == small["init"]["order"]  # official names, official order
    for name, value in small["init"]["full"].items():
        assert torch.equal(state[name], value), name
    for name, (total, abs_total) in small["init"]["float8_sums"].items():
        rounded = state[name].to(torch.float8_e4m3fn).double()
        assert (rounded.sum().item(), rounded.abs().sum().item()) == (total, abs_total), name


def test_eval_forward_matches_the_official_outputs(small):
    model = official_init(small).eval()
    with torch.no_grad():
        out = model.forward_outputs(small["eval"]["inputs"], negative=True)
        plain = model(small["eval"]["inputs"])  # the eval forward: no negative pass, the same outputs
    check_outputs(out, small["eval"]["outputs"])
    assert "saliency_scores_neg" not in plain and torch.equal(plain["pred_spans"], out["pred_spans"])
    assert torch.equal(out["video_mask"], small["eval"]["inputs"]["src_vid_mask"])


def test_training_forward_draws_the_official_dropout(small):
    """Same dropout calls, order and shapes as the official forward (both transformer passes, the negative
    pass's unused decoder included): from the recorded generator state, the official training outputs."""
    from parity_tools.qddetr import record_dropout

    model = official_init(small).train()
    torch.set_rng_state(small["train"]["torch_rng_state"])
    with record_dropout() as calls:
        out = model.forward_outputs(small["train"]["inputs"])
    check_outputs(out, small["train"]["outputs"])
    # the 4 input projections, then per pass 4 per T2V layer, 4 per encoder layer, 6 per decoder layer
    o = small["options"]
    assert len(calls) == 2 * o["n_input_proj"] + 2 * (8 * o["enc_layers"] + 6 * o["dec_layers"])


def test_official_checkpoint_format_loads_strictly(small, tmp_path):
    """``{"model": state_dict, "epoch": ...}`` as the official train.py saves it: safe load, strict."""
    model = official_init(small)
    path = tmp_path / "model_best.ckpt"
    torch.save({"model": model.state_dict(), "epoch": 3}, path)
    other = QDDETR(make_cfg(small["options"]))
    other.load_state_dict(torch.load(path, weights_only=True)["model"], strict=True)
    assert all(torch.equal(a, b) for a, b in zip(other.state_dict().values(), model.state_dict().values()))
    broken = dict(model.state_dict())
    broken.pop("global_rep_token")
    with pytest.raises(RuntimeError, match="global_rep_token"):
        other.load_state_dict(broken, strict=True)


# ---------------------------------------------------------------------------------------------- quirks
def test_t2v_mask_is_repeated_in_the_official_order():
    """Quirk 1: entry b x H + h of the 3-D mask (what nn.MultiheadAttention reads for video b, head h) is the
    mask of video (b x H + h) mod B."""
    torch.manual_seed(0)
    bsz, heads = 3, 4
    video_pad = torch.rand(bsz, 6) > 0.6
    text_pad = torch.rand(bsz, 5) > 0.5
    mask = t2v_attention_mask(video_pad, text_pad, heads)
    for b in range(bsz):
        for h in range(heads):
            o = (b * heads + h) % bsz
            expected = torch.tensor([[bool(video_pad[o, i]) and bool(text_pad[o, k]) for k in range(5)]
                                     for i in range(6)])
            assert torch.equal(mask[b * heads + h], expected)


def reference_t2v_layer(layer, src, pad, pos, lv):
    """The official T2V layer re-expressed per video and head with explicit softmax (dropout off)."""
    d = src.shape[-1]
    heads = layer.nhead
    hd = d // heads
    w, bias = layer.self_attn.in_proj_weight, layer.self_attn.in_proj_bias
    out = src.clone()
    bsz = src.shape[1]
    for b in range(bsz):
        video, text = src[1:lv + 1, b], src[lv + 1:, b]
        q = (video + pos[1:lv + 1, b]) @ w[:d].T + bias[:d]
        k = (text + pos[lv + 1:, b]) @ w[d:2 * d].T + bias[d:2 * d]
        v = text @ w[2 * d:].T + bias[2 * d:]
        heads_out = []
        for h in range(heads):
            o = (b * heads + h) % bsz  # quirk 1
            logits = (q[:, h * hd:(h + 1) * hd] / math.sqrt(hd)) @ k[:, h * hd:(h + 1) * hd].T
            masked = pad[b, lv + 1:][None, :] | (pad[o, 1:lv + 1][:, None] & pad[o, lv + 1:][None, :])
            logits = logits.masked_fill(masked, float("-inf"))
            heads_out.append(torch.softmax(logits, -1) @ v[:, h * hd:(h + 1) * hd])
        attn = layer.self_attn.out_proj(torch.cat(heads_out, -1))
        x = video + attn
        ffn = layer.linear2(layer.activation(layer.linear1(layer.norm1(x))))
        out[1:lv + 1, b] = layer.norm2(x + ffn)  # quirk 2: the residual on the un-normalised x
    return out


def test_t2v_layer_against_a_reference():
    """Video queries over text keys with the mixed mask, FFN residual on the un-normalised input; the global
    token and the text pass through unchanged."""
    torch.manual_seed(1)
    d, lv, lq, bsz = 16, 5, 4, 3
    layer = T2VEncoderLayer(d, 4, 8, dropout=0.0).eval()
    src = torch.randn(1 + lv + lq, bsz, d)
    pos = torch.randn(1 + lv + lq, bsz, d)
    pos[lv + 1:] = 0
    pad = torch.zeros(bsz, 1 + lv + lq, dtype=torch.bool)
    pad[0, 1 + 3:1 + lv] = True          # video 0 has 3 clips
    pad[0, 1 + lv + 2:] = True           # and 2 tokens
    pad[2, 1 + lv + 3:] = True           # video 2 has 3 tokens
    with torch.no_grad():
        ours = layer(src, pad, pos, lv)
        ref = reference_t2v_layer(layer, src, pad, pos, lv)
    assert torch.allclose(ours, ref, atol=1e-5)
    assert torch.equal(ours[0], src[0]) and torch.equal(ours[lv + 1:], src[lv + 1:])


def test_anchor_sine_embedding_against_the_formula():
    anchors = torch.rand(3, 2, 2)
    emb = anchor_sine_embedding(anchors)
    assert emb.shape == (3, 2, 256)
    x = anchors.double() * 2 * math.pi
    i = torch.arange(128, dtype=torch.float64)
    t = 10000 ** (2 * (i // 2) / 128)
    for c in range(2):
        a = x[..., c, None] / t
        ref = torch.where(i % 2 == 0, a.sin(), a.cos())
        assert torch.allclose(emb[..., c * 128:(c + 1) * 128].double(), ref, atol=1e-5)


def reference_rank_contrastive(scores, scores_neg, labels, mask):
    """The official loop (model.py:304-343) re-expressed per video in float64."""
    bsz = scores.shape[0]
    total = 0.0
    terms = []
    for r in range(1, 12):
        pos = labels >= r
        if not pos.any():
            terms.append(None)
            continue
        losses = []
        for b in range(bsz):
            s = torch.cat([scores[b], scores_neg[b]]).double()
            m = torch.cat([mask[b], mask[b]]).double()
            lab = torch.cat([labels[b], torch.zeros_like(labels[b])])
            s = torch.where(m > 0, s, torch.full_like(s, -1e3)) / 0.5
            log_prob = s - s.max() - torch.log(torch.exp(s - s.max()).sum() + 1e-6)
            p = (lab >= r).double()
            losses.append(-(p * log_prob * m).sum() / (p.sum() + 1e-6) if p.sum() > 0 else torch.zeros((), dtype=torch.float64))
        terms.append(torch.stack(losses).mean())
        total = total + terms[-1]
    return total / 12, terms


def test_rank_contrastive_against_the_loop():
    torch.manual_seed(2)
    bsz, lv = 4, 7
    scores, scores_neg = torch.randn(bsz, lv), torch.randn(bsz, lv)
    mask = torch.ones(bsz, lv)
    mask[1, 5:] = 0
    labels = torch.zeros(bsz, lv)
    labels[0, 2:5] = torch.tensor([3.0, 12.0, 7.0])
    labels[1, 0:3] = torch.tensor([1.0, 9.0, 2.0])
    labels[3, 6] = 5.0                     # video 2 has no positive: it adds 0 to every threshold's mean
    loss, terms, active = rank_contrastive_loss(scores, scores_neg, labels, mask)
    ref, ref_terms = reference_rank_contrastive(scores, scores_neg, labels, mask)
    assert abs(loss.item() - ref.item()) < 1e-5
    assert active.tolist() == [t is not None for t in ref_terms]  # 12 > every label except one: r = 11 active
    for ours, theirs in zip(terms, ref_terms):
        assert abs(ours.item() - (0.0 if theirs is None else theirs.item())) < 1e-5


def test_label_row_past_the_video_without_the_official_crash():
    """Quirk 3: a label row one longer than the batch's videos (the official crash at model.py:328) gives the
    loss the official code computes when a longer video pads the batch (the extra positive counts in the
    denominator only)."""
    torch.manual_seed(3)
    lv = 6
    scores, scores_neg = torch.randn(2, lv), torch.randn(2, lv)
    mask = torch.ones(2, lv)
    mask[1, 4:] = 0
    labels = torch.zeros(2, lv + 1)
    labels[0, [2, 3, lv]] = torch.tensor([4.0, 8.0, 6.0])   # a relevant clip one past video 0's features
    labels[1, 1] = 2.0
    ours = rank_contrastive_loss(scores, scores_neg, labels, mask)[0]
    # the official computation on the batch padded to lv + 1 by another video: padded scores are masked
    padded = [F.pad(t, (0, 1)) for t in (scores, scores_neg, mask)]
    ref, _ = reference_rank_contrastive(padded[0], padded[1], labels, padded[2])
    assert abs(ours.item() - ref.item()) < 1e-5
    # and the extra positive changes the loss (it is counted, not dropped)
    dropped = rank_contrastive_loss(scores, scores_neg, labels[:, :lv], mask)[0]
    assert abs(dropped.item() - ours.item()) > 1e-3


def test_neg_pair_is_literal():
    """Quirk 5: -log(1 - sigmoid(s)) in fp32, not softplus: inf once sigmoid rounds to 1, and NaN when that
    happens on a padded clip (inf x 0), as in the official code."""
    s = torch.tensor([[0.5, -3.0, 2.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0]])
    expected = (F.softplus(torch.tensor(0.5)) + F.softplus(torch.tensor(-3.0))).item()
    assert abs(neg_pair_loss(s, mask).item() - expected) < 1e-5
    assert math.isinf(neg_pair_loss(torch.tensor([[0.5, 20.0]]), torch.ones(1, 2)).item())
    assert math.isnan(neg_pair_loss(torch.tensor([[0.5, 20.0]]), torch.tensor([[1.0, 0.0]])).item())


def test_saliency_all_labels_rows():
    row = saliency_all_labels([1, 3], [[1, 2, 0], [4, 4, 4]], ctx_l=5)
    assert row.dtype == torch.float32 and row.tolist() == [0, 3, 0, 12, 0]
    assert saliency_all_labels([3, 5], [[1, 1, 1], [2, 2, 2]], ctx_l=5).tolist() == [0, 0, 0, 3, 0, 6]  # official: 6
    assert len(saliency_all_labels([5, 6], [[1, 1, 1], [2, 2, 2]], ctx_l=5)) == 7  # official: crash


# ---------------------------------------------------------------------------------------------- model contract
def synthetic_batch(bsz=3, lv=(6, 4, 5), lq=(3, 5, 2), dv=6, dt=5, windows=None):
    torch.manual_seed(4)
    items = []
    for b in range(bsz):
        clips = torch.cat([torch.randn(lv[b], dv), torch.rand(lv[b], 2)], 1)
        labels = torch.zeros(lv[b])
        labels[1:3] = torch.tensor([5.0, 9.0])
        items.append({"src_txt": torch.randn(lq[b], dt), "src_vid": clips, "index": b, "duration": 2.0 * lv[b],
                      "qid": b, "vid": f"v{b}", "span_labels": torch.tensor([[0.4, 0.3]]),
                      "saliency_pos": [2, 1], "saliency_neg": [0, lv[b] - 1], "saliency_all_labels": labels})
    return QDDETRCollator()(items)


def test_training_forward_is_the_loss_dict_and_eval_forward_the_outputs():
    cfg = make_cfg(V_FEAT_DIM=6, T_FEAT_DIM=5, NHEADS=4, ENC_LAYERS=1, DIM_FEEDFORWARD=16, NUM_QUERIES=4)
    model = QDDETR(cfg).train()
    batch = synthetic_batch()
    losses = model(batch)
    assert set(losses) >= {"loss", "loss_span", "loss_giou", "loss_label", "loss_saliency", "loss_span_0"}
    total = sum(losses[k] * w for k, w in model.criterion.weight_dict.items())
    assert abs(losses["loss"].item() - total.item()) < 1e-4
    losses["loss"].backward()
    no_grad = {n for n, p in model.named_parameters() if p.grad is None}
    assert no_grad == {n for n, _ in model.named_parameters() if n.startswith("txt_position_embed.")}
    model.eval()
    with torch.no_grad():
        out = model(batch)
        alone = model.forward_outputs(synthetic_batch(bsz=1, lv=(6,), lq=(3,)), negative=True)
        eval_losses = model.losses(model.forward_outputs(batch, negative=True), batch)
    assert out["pred_spans"].shape == (3, 4, 2) and "saliency_scores_neg" not in out
    assert torch.isfinite(eval_losses["loss"])
    # a batch of one pairs the video with its own text: the negative pass is the positive one
    assert torch.allclose(alone["saliency_scores"], alone["saliency_scores_neg"], atol=1e-6)


@pytest.mark.parametrize("key,value,needle", [("HIDDEN_DIM", 128, "HIDDEN_DIM"), ("PRE_NORM", True, "PRE_NORM"),
                                               ("CONTRASTIVE_ALIGN_LOSS", True, "CONTRASTIVE_ALIGN_LOSS"),
                                               ("SPAN_LOSS_TYPE", "ce", "SPAN_LOSS_TYPE")])
def test_impossible_configs_are_refused(key, value, needle):
    with pytest.raises(ConfigError, match=f"MODEL.QD_DETR.{needle}"):
        QDDETR(make_cfg(**{key: value}))


def test_config_node_has_moment_detr_options_and_defaults():
    cfg = get_default_config()
    assert dict(cfg.MODEL.QD_DETR) == dict(cfg.MODEL.MOMENT_DETR)
    assert np.isclose(cfg.MODEL.QD_DETR.SOLVER.LR, 1e-4) and cfg.MODEL.QD_DETR.HIDDEN_DIM == 256
