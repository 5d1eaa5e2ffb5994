"""CNM training: the losses by hand, the optimiser and its schedule, the alternating update, word masking."""
import math

import pytest
import torch

from helpers.cnm import small_cfg
from mmn.modeling.cnm import CNM
from mmn.engine import run_step
from mmn.modeling.cnm.model import sample_masked_words
from mmn.modeling.cnm.data import CNMBatch
from mmn.modeling.cnm.loss import ivc_loss, rec_loss, reconstruction_nll
from mmn.modeling.cnm.optim import FairseqAdam, InverseSqrtSchedule


# ---------------------------------------------------------------------------- losses by hand
def test_reconstruction_nll_by_hand():
    logits = torch.tensor([[[1.0, 2.0, 0.5], [0.0, 0.0, 3.0], [9.0, 9.0, 9.0]]])
    targets = torch.tensor([[1, 2, 0]])
    mask = torch.tensor([[1, 1, 0]])
    expected = 0.0
    for pos in range(2):
        row = logits[0, pos].tolist()
        logz = math.log(sum(math.exp(x) for x in row))
        logp = [x - logz for x in row]
        expected += 0.9 * -logp[targets[0, pos]] + 0.1 / 3 * sum(-x for x in logp)
    expected /= 2
    assert reconstruction_nll(logits, targets, mask).item() == pytest.approx(expected, rel=1e-6)


def test_rec_and_ivc_losses_by_hand():
    ce_p, ce_h, ce_e = torch.tensor([2.0, 1.0]), torch.tensor([2.05, 3.0]), torch.tensor([1.0, 1.2])
    assert rec_loss(ce_p, ce_h).item() == pytest.approx((2.0 + 1.0) / 2 + (2.05 + 3.0) / 2)
    total, hard, easy = ivc_loss(ce_p, ce_h, ce_e, beta1=0.1, beta2=0.15)
    hard_expected = (max(2.0 - 2.05 + 0.1, 0) + max(1.0 - 3.0 + 0.1, 0)) / 2
    easy_expected = (max(2.0 - 1.0 + 0.15, 0) + max(1.0 - 1.2 + 0.15, 0)) / 2
    assert hard.item() == pytest.approx(hard_expected)
    assert easy.item() == pytest.approx(easy_expected)
    assert total.item() == pytest.approx(hard_expected + easy_expected)


# ---------------------------------------------------------------------------- optimiser and schedule
def test_fairseq_adam_update_rule():
    p = torch.nn.Parameter(torch.tensor([1.0, -2.0, 3.0]))
    opt = FairseqAdam([p], lr=0.1)
    grads = [torch.tensor([0.5, 1e-9, -2.0]), torch.tensor([0.1, -3e-9, 1.0])]
    m = torch.zeros(3, dtype=torch.float64)
    v = torch.zeros(3, dtype=torch.float64)
    x = p.detach().double().clone()
    for t, g in enumerate(grads, 1):
        p.grad = g.clone()
        opt.step()
        g = g.double()
        m = 0.9 * m + 0.1 * g
        v = 0.999 * v + 0.001 * g * g
        x = x - 0.1 * math.sqrt(1 - 0.999 ** t) / (1 - 0.9 ** t) * m / (v.sqrt() + 1e-8)
    assert torch.allclose(p.detach().double(), x, atol=1e-6)


def test_inverse_sqrt_schedule():
    p = torch.nn.Parameter(torch.zeros(1))
    opt = FairseqAdam([p], lr=4e-4)
    sched = InverseSqrtSchedule(opt, 4e-4, 400, 1e-7)
    assert opt.param_groups[0]["lr"] == pytest.approx(1e-7)
    assert sched.step_update(200) == pytest.approx(1e-7 + 200 * (4e-4 - 1e-7) / 400)
    assert sched.step_update(400) == pytest.approx(4e-4)
    assert sched.step_update(1600) == pytest.approx(2e-4)
    assert opt.param_groups[0]["lr"] == pytest.approx(2e-4)


# ---------------------------------------------------------------------------- the alternating update
def random_batch(bsz=3, frames=16, words=5, frame_dim=6, word_dim=8, vocab=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.tensor([words, 2, 3][:bsz])
    ids = torch.randint(1, vocab + 1, (bsz, words), generator=g)
    ids[torch.arange(words)[None, :] >= lengths[:, None]] = 0
    weights = torch.where(ids > 0, torch.rand(bsz, words, generator=g) + 0.5, torch.zeros(()))
    weights = weights / weights.sum(1, keepdim=True)
    return CNMBatch(frames_feat=torch.randn(bsz, frames, frame_dim, generator=g),
                    frames_len=torch.full((bsz,), frames), words_id=ids,
                    words_feat=torch.randn(bsz, words + 1, word_dim, generator=g), words_len=lengths,
                    weights=weights, durations=torch.full((bsz,), 30.0, dtype=torch.float64),
                    moments=torch.tensor([[1.0, 5.0]] * bsz), indices=torch.arange(bsz))


def _snapshot(model):
    return {k: v.detach().clone() for k, v in model.named_parameters()}


def test_alternating_update_moves_only_its_group():
    torch.manual_seed(0)
    model = CNM(small_cfg())
    opt, _ = model.build_optimizer(small_cfg(**{"SOLVER.WARMUP_INIT_LR": 1e-3, "SOLVER.LR": 1e-3}))
    before = _snapshot(model)
    seen = {}
    gen_step = opt.gen.step

    def spy_gen_step(*args, **kwargs):
        seen["after_rec"] = _snapshot(model)  # the reconstructor has stepped, the generator not yet
        seen["grads"] = {k: p.grad is not None for k, p in model.named_parameters()}
        return gen_step(*args, **kwargs)

    opt.gen.step = spy_gen_step
    run_step(model, random_batch(), opt)
    after = _snapshot(model)
    mid = seen["after_rec"]
    gen_names = [k for k in before if "mask_gen" in k]
    rec_names = [k for k in before if "mask_gen" not in k]
    assert gen_names == ["fc_mask_gen.weight", "fc_mask_gen.bias"]
    # L_rec step: generator unchanged, reconstructor moved
    assert all(torch.equal(mid[k], before[k]) for k in gen_names)
    assert sum(not torch.equal(mid[k], before[k]) for k in rec_names) >= len(rec_names) - 2  # mask_vec/start_vec may get 0 grad
    # L_IVC step: reconstructor unchanged, generator moved
    assert all(torch.equal(after[k], mid[k]) for k in rec_names)
    assert all(not torch.equal(after[k], mid[k]) for k in gen_names)
    # the release clips over ALL parameters with the stale reconstructor gradients still there
    assert all(seen["grads"].values())
    assert all(p.requires_grad for p in model.parameters())  # flags restored


def test_train_step_returns_losses_and_steps_schedule():
    torch.manual_seed(0)
    cfg = small_cfg()
    model = CNM(cfg)
    opt, _ = model.build_optimizer(cfg)
    logs = run_step(model, random_batch(), opt)
    assert set(logs) == {"loss", "loss_rec", "loss_ivc", "loss_ivc_hard", "loss_ivc_easy"}
    assert logs["loss"] == pytest.approx(logs["loss_rec"] + logs["loss_ivc"])
    assert opt.num_updates == 1 and opt.lr == pytest.approx(1e-7 + (4e-4 - 1e-7) / 400)
    state = opt.state_dict()
    opt2, _ = model.build_optimizer(cfg)
    opt2.load_state_dict(state)
    assert opt2.num_updates == 1 and opt2.lr == pytest.approx(opt.lr)


def test_train_forward_returns_loss_parts_and_eval_moments():
    torch.manual_seed(0)
    model = CNM(small_cfg()).train()
    out = model(random_batch())
    assert set(out) == {"loss", "loss_rec", "loss_ivc", "loss_ivc_hard", "loss_ivc_easy"}
    assert out["loss"].item() == pytest.approx(out["loss_rec"].item() + out["loss_ivc"].item(), rel=1e-6)
    model.eval()
    with torch.no_grad():
        ev = model(random_batch())
    assert ev["moments"].shape == (3, 1, 2)
    assert (ev["moments"] >= 0).all() and (ev["moments"] <= 1).all()
    assert (ev["moments"][..., 1] > ev["moments"][..., 0]).all()
    assert torch.equal(ev["scores"], torch.ones(3, 1))


# ---------------------------------------------------------------------------- word masking
def test_sample_masked_words_counts_and_positions():
    words_len = torch.tensor([1, 2, 3, 7, 20])
    weights = torch.zeros(5, 20)
    for i, n in enumerate(words_len.tolist()):
        weights[i, :n] = 1.0 / n
    torch.manual_seed(0)
    for _ in range(20):
        masked = sample_masked_words(words_len, weights, 21)
        assert masked[:, 0].sum() == 0
        assert masked.sum(1).tolist() == [1, 1, 1, 2, 6]
        for i, n in enumerate(words_len.tolist()):
            assert not masked[i, n + 1:].any()


def test_sample_masked_words_follows_weights():
    probs = torch.tensor([[0.7, 0.2, 0.1]])
    g = torch.Generator().manual_seed(0)
    counts = torch.zeros(4)
    for _ in range(4000):
        counts += sample_masked_words(torch.tensor([3]), probs, 4, generator=g)[0].float()
    assert torch.allclose(counts[1:] / 4000, probs[0], atol=0.03)
    with pytest.raises(ValueError):
        sample_masked_words(torch.tensor([0]), torch.zeros(1, 1), 2)
