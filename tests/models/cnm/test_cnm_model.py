"""CNM: the model's parts (Gaussian mask, mask-conditioned attention, generator head) and building it."""
import math

import pytest
import torch

from helpers.cnm import cnm_cfg, maxdiff, small_cfg
from mmn.modeling.cnm import CNM
from mmn.modeling.cnm.attention import MaskConditionedAttention
from mmn.modeling.cnm.gauss import easy_negative_mask, gaussian_mask, moments_from_gaussian
from mmn.modeling.registry import build_model


# ---------------------------------------------------------------------------- Gaussian mask
def test_gaussian_mask_matches_formula():
    center, width = torch.tensor([0.5, 0.2, 0.9]), torch.tensor([0.3, 0.05, 0.6])
    alpha, num = 5.5, 7
    got = gaussian_mask(center, width, num, alpha)
    for b in range(3):
        w = max(width[b].item(), 0.1)
        for i in range(num):
            t = i / (num - 1)
            assert got[b, i].item() == pytest.approx(math.exp(-alpha * (t - center[b].item()) ** 2 / w ** 2), rel=1e-5)
    assert got[0, 3].item() == pytest.approx(1.0)  # peak at the centre
    assert torch.allclose(easy_negative_mask(got), 1 - got)
    # the 0.1 clamp: widths below it give the same mask
    assert torch.equal(gaussian_mask(torch.tensor([0.4]), torch.tensor([0.01]), 9, 5.0),
                       gaussian_mask(torch.tensor([0.4]), torch.tensor([0.1]), 9, 5.0))


def test_moments_from_gaussian_clamps():
    m = moments_from_gaussian(torch.tensor([0.1, 0.5, 0.95]), torch.tensor([0.4, 0.2, 0.3]))
    assert torch.allclose(m, torch.tensor([[0.0, 0.3], [0.4, 0.6], [0.8, 1.0]]))


# ---------------------------------------------------------------------------- mask-conditioned attention
def _attention(seed=0, dim=16, heads=4):
    torch.manual_seed(seed)
    attn = MaskConditionedAttention(dim, heads)
    with torch.no_grad():
        attn.in_proj_bias.normal_()
        attn.out_proj.bias.normal_()
    return attn


def test_attention_all_ones_mask_is_ordinary_attention():
    attn = _attention()
    q, kv = torch.randn(5, 2, 16), torch.randn(7, 2, 16)
    reference = torch.nn.MultiheadAttention(16, 4)
    with torch.no_grad():
        reference.in_proj_weight.copy_(attn.in_proj_weight)
        reference.in_proj_bias.copy_(attn.in_proj_bias)
        reference.out_proj.weight.copy_(attn.out_proj.weight)
        reference.out_proj.bias.copy_(attn.out_proj.bias)
    expected, _ = reference(q, kv, kv)
    plain, _ = attn(q, kv)
    ones, _ = attn(q, kv, key_weight=torch.ones(2, 7))
    assert maxdiff(plain, expected) < 1e-5
    assert maxdiff(ones, expected) < 1e-5


def test_attention_zero_weight_removes_a_frame():
    attn = _attention(1)
    q, kv = torch.randn(4, 1, 16), torch.randn(6, 1, 16)
    weight = torch.rand(1, 6) + 0.1
    weight[0, 2] = 0.0
    changed = kv.clone()
    changed[2] = torch.randn(16) * 3  # a completely different frame 2 (not so large that the softmax puts
    # all its mass on it: then the release's post-softmax weighting lets it dominate, see docs/CNM.md)
    out, probs = attn(q, kv, key_weight=weight)
    out2, _ = attn(q, changed, key_weight=weight)
    assert maxdiff(out, out2) < 1e-5
    assert probs[..., 2].max().item() < 1e-8
    # the same change with a non-zero weight does move the output (the test can fail)
    weight[0, 2] = 1.0
    assert maxdiff(attn(q, kv, key_weight=weight)[0], attn(q, changed, key_weight=weight)[0]) > 1e-2


def test_attention_weights_after_softmax_as_the_release():
    """The release multiplies the softmax probabilities by (m + 1e-10) and renormalises (not Softmax(A*m))."""
    attn = _attention(2, heads=1)  # one head: the returned map is that head's
    q, kv = torch.randn(3, 1, 16), torch.randn(5, 1, 16)
    m = torch.tensor([[0.2, 1.0, 0.5, 0.0, 0.7]])
    _, plain = attn(q, kv)
    _, weighted = attn(q, kv, key_weight=m)
    expected = plain * (m[:, None, :] + 1e-10)
    expected = expected / expected.sum(-1, keepdim=True)
    assert maxdiff(weighted, expected) < 1e-6


# ---------------------------------------------------------------------------- the generator head
def test_pooled_generator_head_is_an_attention_weighted_position():
    """MODEL.CNM.GENERATOR_HEAD "pooled": center = sum_t softmax_t(fc_mask_gen(h_t)[0]) * t / (T - 1)."""
    cfg = cnm_cfg(FRAME_DIM=6, WORD_DIM=8, HIDDEN_SIZE=16, NUM_HEADS=2, NUM_LAYERS_1=1, NUM_LAYERS_2=1,
                  NUM_FRAMES=8, PROPOSAL_STRIDE=2, VOCAB_SIZE=5, GENERATOR_HEAD="pooled")
    torch.manual_seed(0)
    model = CNM(cfg).eval()
    batch = dict(frames_feat=torch.randn(3, 8, 6), frames_len=torch.full((3,), 8),
                 words_feat=torch.randn(3, 4, 8), words_len=torch.tensor([3, 2, 1]))
    g = model.generate(batch)
    h = model.trans.generate(g["frames"], g["frames_valid"], g["words"] + g["words_pos"], g["words_valid"])
    out = model.fc_mask_gen(h)
    for b in range(3):
        weights = torch.softmax(out[b, :, 0], dim=0)
        expected = sum(float(weights[t]) * t / 7 for t in range(8))
        assert abs(float(g["center"][b]) - expected) < 1e-6
    assert ((g["width"] > 0) & (g["width"] <= cfg.MODEL.CNM.MAX_WIDTH)).all()


# ---------------------------------------------------------------------------- building
def test_build_model_from_registry():
    model = build_model(small_cfg())
    assert isinstance(model, CNM)
