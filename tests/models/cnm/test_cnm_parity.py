"""CNM: parity with the official code, on the recorded fixture (tests/fixtures/cnm_parity)."""
import copy
from unittest import mock
import os

import pytest
import torch

from helpers.cnm import cnm_cfg, maxdiff
from mmn.engine import run_step
from mmn.modeling.cnm import CNM
from mmn.modeling.cnm.gauss import moments_from_gaussian
from mmn.modeling.cnm.loss import ivc_loss, rec_loss, reconstruction_nll

from helpers.paths import FIXTURES_DIR

FIXTURE = os.path.join(FIXTURES_DIR, "cnm_parity", "cnm_expected.pt")
TOL = 1e-5


# ---------------------------------------------------------------------------- fixture
@pytest.fixture(scope="module")
def fixture():
    return torch.load(FIXTURE, weights_only=True)


def fixture_cfg(fx):
    c, t = fx["config"], fx["config"]["DualTransformer"]
    tc = fx["train_config"]
    return cnm_cfg(FRAME_DIM=c["frames_input_size"], WORD_DIM=c["words_input_size"], HIDDEN_SIZE=c["hidden_size"],
                   NUM_HEADS=t["num_heads"], NUM_LAYERS_1=t["num_decoder_layers1"], NUM_LAYERS_2=t["num_decoder_layers2"],
                   DROPOUT=c["dropout"], TRANSFORMER_DROPOUT=t["dropout"], ALPHA=c["alpha"], MAX_WIDTH=c["max_width"],
                   VOCAB_SIZE=c["vocab_size"] - 1, **{
                       "LOSS.BETA1": fx["loss_config"]["beta_1"], "LOSS.BETA2": fx["loss_config"]["beta_2"],
                       "SOLVER.LR": tc["lr"], "SOLVER.WARMUP_UPDATES": tc["warmup_updates"],
                       "SOLVER.WARMUP_INIT_LR": tc["warmup_init_lr"], "SOLVER.WEIGHT_DECAY": float(tc["weight_decay"])})


def fixture_model(fx):
    model = CNM(fixture_cfg(fx))
    model.load_state_dict(fx["init_state"])
    return model


def fixture_batch(fx):
    return {k: v.clone() for k, v in fx["batch"].items()}


# ---------------------------------------------------------------------------- parity with the official code
def test_parameter_names_match_official_checkpoint(fixture):
    model = CNM(fixture_cfg(fixture))
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    theirs = {k: tuple(v.shape) for k, v in fixture["init_state"].items()}
    assert ours == theirs


def test_parity_eval_center_width(fixture):
    model = fixture_model(fixture).eval()
    with torch.no_grad():
        out = model(fixture_batch(fixture))
    assert maxdiff(out["center"], fixture["eval"]["center"]) < TOL
    assert maxdiff(out["width"], fixture["eval"]["width"]) < TOL
    assert out["moments"].shape == (4, 1, 2) and out["scores"].shape == (4, 1)
    expected = moments_from_gaussian(fixture["eval"]["center"], fixture["eval"]["width"])
    assert maxdiff(out["moments"][:, 0], expected) < TOL


def test_parity_train_forward(fixture):
    tf = fixture["train_forward"]
    model = fixture_model(fixture).train()
    out = model.forward_outputs(fixture_batch(fixture), masked_words=tf["masked_words"])
    for key in ("center", "width", "gauss_weight", "words_logit", "hard_neg_words_logit", "easy_neg_words_logit"):
        assert maxdiff(out[key], tf[key]) < TOL, key
    assert torch.equal(out["words_mask"].to(torch.uint8), tf["words_mask"])
    assert abs(model.reconstruction_loss(out).item() - tf["rec_loss"]) < TOL
    assert abs(model.contrastive_loss(out)[0].item() - tf["ivc_loss"]) < TOL


def test_parity_losses_from_recorded_logits(fixture):
    """Both losses from the official logits themselves (isolates the loss code from the network)."""
    tf = fixture["train_forward"]
    ids, mask = fixture["batch"]["words_id"], tf["words_mask"]
    ce = {k: reconstruction_nll(tf[k], ids, mask) for k in ("words_logit", "hard_neg_words_logit", "easy_neg_words_logit")}
    assert abs(rec_loss(ce["words_logit"], ce["hard_neg_words_logit"]).item() - tf["rec_loss"]) < TOL
    total, _, _ = ivc_loss(ce["words_logit"], ce["hard_neg_words_logit"], ce["easy_neg_words_logit"], 0.1, 0.15)
    assert abs(total.item() - tf["ivc_loss"]) < TOL


def test_parity_two_alternating_iterations(fixture):
    """Weights after two official iterations. Everything within 1e-5, except the KEY part of the
    attention in-projection biases: a key bias shifts every score of a row equally, so softmax makes
    its true gradient exactly 0, and what Adam turns into an update is float rounding noise of the
    machine that ran it (the official code itself, run here, is 1.2e-5 away from its own fixture on
    those entries, and bit-identical to this implementation). Those entries get 5e-5."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        _check_two_iterations(fixture)
    finally:
        torch.set_num_threads(threads)


def _check_two_iterations(fixture):
    model = fixture_model(fixture)
    cfg = fixture_cfg(fixture)
    opt, _ = model.build_optimizer(cfg)
    dim = fixture["config"]["hidden_size"]
    batch = fixture_batch(fixture)
    previous = copy.deepcopy(fixture["init_state"])
    for step in fixture["steps"]:
        # the engine's update, its two forwards masking the words the release masked in that iteration
        masks = iter(step["masked_words"])
        with mock.patch("mmn.modeling.cnm.model.sample_masked_words", lambda *args, **kwargs: next(masks)):
            logs = run_step(model, batch, opt)
        assert abs(logs["loss_rec"] - step["rec_loss"]) < TOL
        assert abs(logs["loss_ivc"] - step["ivc_loss"]) < TOL
        assert opt.rec_schedule.lr == pytest.approx(step["rec_lr"], abs=1e-12)
        assert opt.gen_schedule.lr == pytest.approx(step["gen_lr"], abs=1e-12)
        state = model.state_dict()
        assert set(state) == set(step["state"])
        for name, expected in step["state"].items():
            diff = (state[name] - expected).abs()
            if name.endswith("in_proj_bias"):
                assert diff[dim:2 * dim].max().item() < 5e-5, name
                diff = torch.cat([diff[:dim], diff[2 * dim:]])
            assert diff.max().item() < TOL, name
            moved_official = (expected - previous[name]).abs().max().item()
            moved_ours = (state[name] - previous[name]).abs().max().item()
            assert (moved_official > 0) == (moved_ours > 0), name
        previous = {k: v.clone() for k, v in step["state"].items()}


def test_key_bias_gradient_is_zero(fixture):
    """Why the key biases get a looser tolerance above: their gradient is rounding noise."""
    model = fixture_model(fixture).train()
    out = model.forward_outputs(fixture_batch(fixture), masked_words=fixture["train_forward"]["masked_words"])
    model.reconstruction_loss(out).backward()
    dim = fixture["config"]["hidden_size"]
    for name, p in model.named_parameters():
        if name.endswith("in_proj_bias"):
            assert p.grad[dim:2 * dim].abs().max().item() < 1e-6, name
            assert p.grad[2 * dim:].abs().max().item() > 1e-4, name  # the value bias does learn
