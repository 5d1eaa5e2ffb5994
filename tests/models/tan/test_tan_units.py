"""2D-TAN: units against independent references (official rules written out in Python), config checks,
checkpoint loading, the six official configs, the scheduler's sign."""
import glob
import os

import numpy as np
import pytest
import torch

from mmn.config import load_config
from mmn.config.loading import ConfigError
from mmn.evaluation import recall_table
from mmn.modeling.tan import TAN
from mmn.modeling.tan.data import WordVectors, iou_map, load_word_vectors, official_tokens
from mmn.modeling.tan.optim import build_tan_optimizer, step_plateau
from mmn.modeling.tan.prop import SparsePropConv, SparsePropMaxPool, tan_moment_cells
from mmn.modeling.tan.ranking import eval_time_grid, top_moments
from mmn.utils.checkpoint import CheckpointError, load_model_weights

from tan_fixture import CHECKPOINT, GLOVE, load_expected, official_to_cfg

torch.set_num_threads(1)
from helpers.paths import CONFIGS_DIR as CONFIGS


@pytest.fixture(scope="module")
def official_cfg():
    return load_expected()["config"]


# ---------------------------------------------------------------------------- ranking and NMS
def official_nms(dets, thresh, top_k):
    """``lib/core/eval.py:nms`` written out: float64, IoU = inter / (len_a + len_b - inter), kept when <=."""
    dets = np.array(dets, dtype=np.float64)
    order = np.arange(len(dets))
    x1, x2 = dets[:, 0], dets[:, 1]
    lengths = x2 - x1
    keep = []
    while order.size > 0:
        i = order[0]
        keep.append(i)
        if len(keep) == top_k:
            break
        inter = np.maximum(0.0, np.minimum(x2[i], x2[order[1:]]) - np.maximum(x1[i], x1[order[1:]]))
        overlap = inter / (lengths[i] + lengths[order[1:]] - inter)
        order = order[np.where(overlap <= thresh)[0] + 1]
    return dets[keep]


def official_ranking(score, duration):
    """``train.py:get_proposal_results`` with a stable argsort (ties row-major): candidates (start <= end)."""
    t = score.shape[-1]
    flat = torch.sort(score.reshape(-1), descending=True, stable=True).indices
    idx = torch.stack([flat // t, flat % t], dim=1)
    idx = idx[idx[:, 0] <= idx[:, 1]].float()
    idx[:, 1] += 1
    return (idx / t * duration).tolist()


@pytest.mark.parametrize("num_clips,thresh", [(16, 0.45), (64, 0.5)])
def test_nms_matches_official_loop(num_clips, thresh):
    """Random maps on the sparse masks of the official configs (many IoUs exactly at 0.5 on the 64 grid);
    quantised scores make ties, so the tie rule is exercised too."""
    gen = torch.Generator().manual_seed(num_clips)
    layers = [16] if num_clips == 16 else [16, 8, 8]
    mask = tan_moment_cells(layers, num_clips)[0]
    scores = (torch.rand(6, num_clips, num_clips, generator=gen) * 50).round() / 50 * mask
    durations = torch.tensor([30.38, 16.71, 120.5, 7.3, 221.0, 33.54], dtype=torch.float64)
    moments, _ = top_moments(scores, durations, thresh, k=5)
    for q in range(len(scores)):
        ref = official_nms(official_ranking(scores[q], float(durations[q])), thresh, 5)
        assert torch.equal(moments[q, :len(ref)], torch.from_numpy(ref)), f"query {q}"


def test_zero_score_candidates_switch():
    scores = torch.zeros(1, 4, 4)
    scores[0, 0, 0], scores[0, 1, 3] = 0.9, 0.8
    d = torch.tensor([8.0], dtype=torch.float64)
    kept, kept_scores = top_moments(scores, d, 0.5, k=5, zero_score_candidates=True)
    assert not torch.isnan(kept).any()  # masked cells fill the remaining ranks (score 0)
    assert kept_scores[0, 2:].eq(0).all()
    kept, kept_scores = top_moments(scores, d, 0.5, k=5, zero_score_candidates=False)
    assert kept[0, :2].tolist() == [[0.0, 2.0], [2.0, 8.0]] and torch.isnan(kept[0, 2:]).all()
    assert torch.isneginf(kept_scores[0, 2:]).all()


def test_eval_grid_is_k_over_t_times_d():
    """The eval grid rounds as (k / T) x d, the targets' grid as (k x d) / T: the same for a power-of-two T
    (every official config), different otherwise."""
    from mmn.modeling.tan.data import target_grid

    d = torch.tensor([30.38, 33.54, 37.79, 17.2], dtype=torch.float64)
    for t in (16, 12):
        k = torch.arange(t + 1, dtype=torch.float32)
        grid = eval_time_grid(d, t)
        assert (grid[:, 0, :, 0] == 0).all()
        assert torch.equal(grid[:, 0, :, 1], (k[1:] / t)[None] * d.float()[:, None])
        assert torch.equal(grid[:, :, 0, 0], (k[:-1] / t)[None] * d.float()[:, None])
        targets = torch.stack([target_grid(float(x), t) for x in d])
        assert torch.equal(grid, targets) == (t == 16)


def test_recall_strict_and_inclusive():
    top = torch.tensor([[[0.0, 5.0], [0.0, 10.0]]], dtype=torch.float64)
    gt = torch.tensor([[0.0, 10.0]], dtype=torch.float64)  # top-1 IoU exactly 0.5, top-2 1.0
    strict = recall_table(top, gt, (0.5, 0.7), (1, 2), strict=True)
    inclusive = recall_table(top, gt, (0.5, 0.7), (1, 2), strict=False)
    assert strict["R@1,IoU@0.5"] == 0.0 and inclusive["R@1,IoU@0.5"] == 1.0
    assert strict["R@2,IoU@0.7"] == inclusive["R@2,IoU@0.7"] == 1.0
    assert strict["mIoU"] == 0.5


# ---------------------------------------------------------------------------- moment map
def test_pool_map_cells_hold_the_max_over_their_clips():
    x = torch.randn(2, 3, 64)
    map_h, map_mask = SparsePropMaxPool([16, 8, 8], 64)(x)
    rows, cols = map_mask[0, 0].nonzero(as_tuple=True)
    for i, j in zip(rows.tolist(), cols.tolist()):
        assert torch.equal(map_h[:, :, i, j], x[:, :, i:j + 1].max(dim=2).values), (i, j)
    assert (map_h[:, :, map_mask[0, 0] == 0] == 0).all()
    assert int(map_mask.sum().item()) == 2 * 1104  # MMN's [15, 8, 8] mask of the same 64 x 64 map


def official_prop_conv(layers, x, num_scale_layers):
    """The official SparsePropConv forward (per-scale maps, then ``recover_to_original_map``), written out."""
    b, h, n = x.shape
    out, mask = x.new_zeros(b, h, n, n), torch.zeros(n, n)
    acum, stride = 0, 1
    for scale, scale_layers in enumerate(layers):
        for i, layer in enumerate(scale_layers):
            x = layer(x)
            stride *= layer.stride[0]
            s = list(range(0, n - acum - i * stride, stride))
            e = [k + acum + i * stride for k in s]
            out[:, :, s, e] = x[:, :, :len(s)]
            mask[s, e] = 1
        acum += stride * (len(scale_layers) + 1)
    return out, mask


def test_conv_map_matches_official_recover_and_names():
    torch.manual_seed(0)
    prop = SparsePropConv([16, 8, 8], 64, 8)
    names = [n for n, _ in prop.named_parameters()]
    assert names[:2] == ["layers.0.0.weight", "layers.0.0.bias"] and "layers.2.7.bias" in names
    assert prop.layers[0][0].kernel_size == (1,) and prop.layers[1][0].stride == (2,)
    x = torch.randn(2, 8, 64)
    with torch.no_grad():
        ours, mask = prop(x)
        ref, ref_mask = official_prop_conv(prop.layers, x, [16, 8, 8])
    assert torch.equal(mask[0, 0], ref_mask) and torch.equal(ours, ref)


# ---------------------------------------------------------------------------- words and targets
def test_tokens_follow_the_official_loaders():
    assert official_tokens("a person opens the door.", "charades") == ["a", "person", "opens", "the", "door"]
    assert official_tokens("He turns to the camera. It works, too.", "activitynet") == \
        ["He", "turns", "to", "the", "camera.", "It", "works,", "too."]
    vectors = WordVectors({"he": np.ones(2, np.float32)}, 2)
    assert vectors(["He", "zzz"]).tolist() == [[1.0, 1.0], [0.0, 0.0]]


def test_glove_text_and_npz(tmp_path):
    text = load_word_vectors(GLOVE, {"Person", "girl"}, 16)
    assert "person" in text.vectors and "girl" not in text.vectors
    path = str(tmp_path / "g.npz")
    np.savez(path, words=np.array(["person"]), vectors=text.vectors["person"][None])
    assert np.array_equal(load_word_vectors(path, {"person"}, 16).vectors["person"], text.vectors["person"])
    with pytest.raises(ValueError, match="TXT_INPUT_SIZE"):
        load_word_vectors(path, {"person"}, 300)


def test_iou_map_rounds_the_ground_truth_to_float32():
    m = iou_map(torch.tensor([12.3, 20.5], dtype=torch.float64), 21.25, 8)
    assert m.dtype == torch.float64 and (m.tril(-1) == 0).all()
    s = torch.arange(8).float() * 21.25 / 8
    e = torch.arange(1, 9).float() * 21.25 / 8
    gs, ge = np.float32(12.3), np.float32(20.5)
    i, j = 4, 7
    inter = max(0.0, min(float(e[j]), float(ge)) - max(float(s[i]), float(gs)))
    union = max(float(e[j]), float(ge)) - min(float(s[i]), float(gs))
    assert m[i, j].item() == inter / union


# ---------------------------------------------------------------------------- config and checkpoints
def test_checkpoint_loads_strictly(official_cfg):
    cfg = official_to_cfg(official_cfg)
    model = TAN(cfg)
    load_model_weights(model, CHECKPOINT)
    state = torch.load(CHECKPOINT, weights_only=True)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in state.items())


def test_checkpoint_mismatch_lists_the_keys(official_cfg):
    conv = TAN(official_to_cfg(official_cfg, **{"MODEL.TAN.PROP_MODULE.NAME": "SparsePropConv"}))
    with pytest.raises(CheckpointError, match=r"missing prop_layer\.layers\.0\.0\.bias"):
        load_model_weights(conv, CHECKPOINT)
    model = TAN(official_to_cfg(official_cfg))
    state = torch.load(CHECKPOINT, weights_only=True)
    state["pred_layer.extra"] = state.pop("pred_layer.bias")
    with pytest.raises(CheckpointError, match=r"missing pred_layer\.bias; unexpected pred_layer\.extra"):
        load_model_weights(model, state)


@pytest.mark.parametrize("key,value,message", [
    ("MODEL.TAN.FRAME_MODULE.STRIDE", 4, "FRAME_MODULE KERNEL_SIZE"),
    ("MODEL.TAN.MAP_MODULE.PADDINGS", [2, 0, 0], "MAP_MODULE KERNEL_SIZES"),
    ("MODEL.TAN.PROP_MODULE.NUM_SCALE_LAYERS", [5, 8], "skip that layer"),
    ("MODEL.TAN.PROP_MODULE.NAME", "Dense", "PROP_MODULE.NAME"),
    ("MODEL.TAN.PRED_INPUT_SIZE", 7, "PRED_INPUT_SIZE"),
    ("MODEL.TAN.LOSS.MAX_IOU", 0.4, "MAX_IOU"),
])
def test_impossible_configs_are_named(official_cfg, key, value, message):
    with pytest.raises(ConfigError, match=message):
        TAN.check_config(official_to_cfg(official_cfg, **{key: value}))


def test_bidirectional_lstm_halves_the_hidden_size(official_cfg):
    model = TAN(official_to_cfg(official_cfg, **{"MODEL.TAN.FUSION_MODULE.LSTM.BIDIRECTIONAL": True}))
    lstm = model.fusion_layer.textual_encoder
    assert lstm.bidirectional and lstm.hidden_size == 16


def test_build_query_batch(official_cfg):
    cfg = official_to_cfg(official_cfg)
    batch = TAN.build_query_batch(cfg, torch.randn(23, 32), 31.8, ["a person opens the door.", "person sits"])
    assert batch.vis_input.shape == (2, 16, 32) and batch.word_vectors.shape == (2, 5, 16)
    assert batch.txt_mask[:, :, 0].sum(1).tolist() == [5, 2]
    model = TAN(cfg).eval()
    with torch.no_grad():
        out = model(batch)
    ranked = model.rank_moments(out, batch, 5)
    assert ranked.moments.shape == (2, 5, 2) and (ranked.moments[..., 1] <= 31.8 + 1e-4).all()


# ---------------------------------------------------------------------------- scheduler
def test_plateau_steps_on_minus_the_validation_loss(official_cfg):
    cfg = official_to_cfg(official_cfg, **{"MODEL.TAN.SOLVER.PATIENCE": 2, "MODEL.TAN.SOLVER.FACTOR": 0.5})
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer, scheduler = build_tan_optimizer([param], cfg)
    assert isinstance(optimizer, torch.optim.Adam) and not isinstance(optimizer, torch.optim.AdamW)
    assert not step_plateau(scheduler, {"loss": 1.0})  # no validation loss (NO_VAL): no step
    for loss in (1.0, 0.9, 0.8, 0.7):  # a FALLING validation loss: -loss rises, no improvement in mode min
        step_plateau(scheduler, {"val": {"loss": loss}})
    assert optimizer.param_groups[0]["lr"] == pytest.approx(cfg.MODEL.TAN.SOLVER.LR * 0.5)
    optimizer, scheduler = build_tan_optimizer([param], cfg)
    for loss in (1.0, 0.9, 0.8, 0.7):
        step_plateau(scheduler, {"val": {"loss": loss}}, sign=1.0)  # the plateau on the loss itself
    assert optimizer.param_groups[0]["lr"] == cfg.MODEL.TAN.SOLVER.LR


# ---------------------------------------------------------------------------- the six official configs
# (variant file, T, feature size, NUM_SCALE_LAYERS, map kernel, map layers, NMS {pool, conv}, MIN_IOU, MAX_IOU,
# NORMALIZE, batch); every key of every experiment: tests/test_official_configs.py
OFFICIAL = {
    "charades_16x16_k5l8": (16, 4096, [16], 5, 8, {"pool": 0.45, "conv": 0.5}, 0.5, 1.0, True, 32),
    "activitynet_64x64_k9l4": (64, 500, [16, 8, 8], 9, 4, {"pool": 0.5, "conv": 0.5}, 0.5, 1.0, True, 32),
    "tacos_128x128_k5l8": (128, 4096, [16, 8, 8, 8], 5, 8, {"pool": 0.4, "conv": 0.5}, 0.3, 0.7, True, 32),
}


@pytest.mark.parametrize("variant", ["pool", "conv"])
@pytest.mark.parametrize("name", sorted(OFFICIAL))
def test_official_configs(variant, name):
    t, feat, layers, kernel, nmap, nms, min_iou, max_iou, normalize, batch = OFFICIAL[name]
    cfg = load_config(os.path.join(CONFIGS, f"tan_{variant}_{name}.yaml"))
    c = cfg.MODEL.TAN
    TAN.check_config(cfg)
    assert cfg.MODEL.ARCHITECTURE == "TAN" and c.NUM_SAMPLE_CLIPS // c.TARGET_STRIDE == t
    assert c.FRAME_MODULE.INPUT_SIZE == feat and list(c.PROP_MODULE.NUM_SCALE_LAYERS) == layers
    assert c.PROP_MODULE.NAME == {"pool": "SparsePropMaxPool", "conv": "SparsePropConv"}[variant]
    assert list(c.MAP_MODULE.KERNEL_SIZES) == [kernel] * nmap and c.MAP_MODULE.PADDINGS[0] == 16
    assert (cfg.TEST.NMS_THRESH, c.LOSS.MIN_IOU, c.LOSS.MAX_IOU, c.NORMALIZE) == (nms[variant], min_iou, max_iou, normalize)
    assert cfg.SOLVER.BATCH_SIZE == batch and c.SOLVER.LR == 1e-4 and cfg.SOLVER.MAX_GRAD_NORM == 10
    assert c.FUSION_MODULE.TXT_INPUT_SIZE == 300 and c.ZERO_SCORE_CANDIDATES


def test_six_configs_exist():
    assert len(glob.glob(os.path.join(CONFIGS, "tan_*_*x*_k*.yaml"))) == 6


def test_conv_config_builds_official_parameter_shapes():
    """The conv Charades model: the official state-dict layout (1x1 first layer, 15 kernel-2 layers)."""
    cfg = load_config(os.path.join(CONFIGS, "tan_conv_charades_16x16_k5l8.yaml"))
    model = TAN(cfg)
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert shapes["prop_layer.layers.0.0.weight"] == (512, 512, 1)
    assert shapes["prop_layer.layers.0.15.weight"] == (512, 512, 2)
    assert shapes["map_layer.convs.7.weight"] == (512, 512, 5, 5) and shapes["pred_layer.weight"] == (1, 512, 1, 1)
    assert shapes["fusion_layer.textual_encoder.weight_ih_l0"] == (2048, 300)
    assert len(shapes) == 2 + 32 + 12 + 4 + 16 + 2  # frame, prop, LSTM, tex_linear + vis_conv, map, pred


def test_model_schedule_and_ranking_defaults_are_official(official_cfg):
    """TAN.end_epoch steps on -(val loss); TAN.rank_moments ranks the zero-score (masked) cells last."""
    cfg = official_to_cfg(official_cfg, **{"MODEL.TAN.SOLVER.PATIENCE": 0, "MODEL.TAN.SOLVER.FACTOR": 0.5})
    model = TAN(cfg)
    optimizer, scheduler = model.build_optimizer(cfg)
    model.end_epoch(scheduler, {"val": {"loss": 1.0}})
    model.end_epoch(scheduler, {"val": {"loss": 0.5}})  # falls: no improvement of -loss, patience 0 -> cut
    assert optimizer.param_groups[0]["lr"] == pytest.approx(cfg.MODEL.TAN.SOLVER.LR * 0.5)
    joint_prob = torch.zeros(1, 8, 8)
    joint_prob[0, 0, 3] = 0.7  # one scored cell: NMS goes on into the masked ones
    batch = TAN.build_query_batch(cfg, torch.randn(20, 32), 16.0, ["a person sits"])
    ranked = model.rank_moments({"joint_prob": joint_prob}, batch, 5)
    assert ranked.moments[0, 0].tolist() == [0.0, 8.0] and not torch.isnan(ranked.moments).any()
    assert ranked.scores[0, 1:].eq(0).all()


def test_rescaled_targets_bias():
    from mmn.modeling.tan.loss import rescaled_iou_targets

    iou = torch.tensor([0.2, 0.5, 0.75, 1.0], dtype=torch.float64)
    assert rescaled_iou_targets(iou, 0.5, 1.0, 0.0).tolist() == [0.0, 0.0, 0.5, 1.0]
    assert rescaled_iou_targets(iou, 0.5, 1.0, 0.1).tolist() == pytest.approx([0.0, 0.0, 0.55, 1.0])


@pytest.mark.parametrize("path", sorted(glob.glob(os.path.join(CONFIGS, "tan_*_*x*_k*.yaml"))))
def test_official_configs_evaluate_as_the_official_code(path):
    cfg = load_config(path)
    assert cfg.TEST.STRICT_IOU and cfg.MODEL.TAN.ZERO_SCORE_CANDIDATES and tuple(cfg.TEST.RECALLS) == (1, 5)
