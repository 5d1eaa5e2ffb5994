"""The engine's one training step (``run_step``) against hand-written updates: the update phases of the contract
(trainable group, back-propagated loss, optimizer, a new or a shared forward), the shards of SOLVER.NUM_SHARDS
and the step's log."""
import copy
import types

import pytest
import torch
from torch import nn

from mmn.engine import run_step
from mmn.modeling import GroundingModel
from mmn.modeling.base import UpdatePhase

CFG = types.SimpleNamespace(SOLVER=types.SimpleNamespace(MAX_GRAD_NORM=0.0))  # what GroundingModel.__init__ reads


class TwoHeads(GroundingModel):
    """Two independent linear heads; ``phases`` decides how an update trains them."""

    def __init__(self, phases):
        super().__init__(CFG)
        torch.manual_seed(0)
        self.a, self.b = nn.Linear(3, 1), nn.Linear(3, 1)
        self.phases, self.calls = phases, []

    def parameter_groups(self):
        return {"a": list(self.a.parameters()), "b": list(self.b.parameters())}

    def update_phases(self):
        return self.phases

    def forward(self, x, epoch=1, phase=None):
        self.calls.append((phase, [name for name, p in self.named_parameters() if p.requires_grad]))
        return {"loss_a": self.a(x).pow(2).mean(), "loss_b": (self.b(x) - 1).pow(2).mean()}


def sgd_pair(model):
    return {"a": torch.optim.SGD(model.a.parameters(), lr=0.1), "b": torch.optim.SGD(model.b.parameters(), lr=0.1)}


def reference(model, x):
    """Each head one SGD step (lr 0.1) on its own loss at the initial weights."""
    expected = copy.deepcopy(model)
    out = expected(x)
    for head, loss in ((expected.a, out["loss_a"]), (expected.b, out["loss_b"])):
        grads = torch.autograd.grad(loss, list(head.parameters()), retain_graph=True)
        with torch.no_grad():
            for p, g in zip(head.parameters(), grads):
                p -= 0.1 * g
    return expected.state_dict(), float(out["loss_a"]) + float(out["loss_b"])


@pytest.mark.parametrize("new_forward", [True, False])
def test_two_phases_step_their_own_group_with_their_own_loss(new_forward):
    model = TwoHeads((UpdatePhase("first", loss="loss_a", trainable="a", optimizer="a"),
                      UpdatePhase("second", loss="loss_b", trainable="b", optimizer="b", new_forward=new_forward)))
    x = torch.randn(5, 3)
    expected, loss = reference(model, x)
    logs = run_step(model, x, sgd_pair(model))
    for name, value in model.state_dict().items():
        torch.testing.assert_close(value, expected[name], rtol=0, atol=1e-7, msg=name)
    assert logs["loss"] == pytest.approx(loss, abs=1e-6)  # the sum of the phases' back-propagated losses
    if new_forward:  # each forward with only its phase's group trainable, told its phase
        assert model.calls == [("first", ["a.weight", "a.bias"]), ("second", ["b.weight", "b.bias"])]
    else:  # one forward for both phases, with both groups trainable
        assert model.calls == [("first", ["a.weight", "a.bias", "b.weight", "b.bias"])]
    assert all(p.requires_grad for p in model.parameters())  # the flags are restored


def test_one_phase_over_shards_is_the_mean_of_their_gradients():
    """SOLVER.NUM_SHARDS: a list of shards gives the gradient of the mean of their losses."""
    model = TwoHeads((UpdatePhase(loss="loss_a"),))
    whole = copy.deepcopy(model)
    x = torch.randn(6, 3)
    run_step(model, [x[:3], x[3:]], torch.optim.SGD(model.parameters(), lr=0.1))
    run_step(whole, x, torch.optim.SGD(whole.parameters(), lr=0.1))
    for (name, a), b in zip(model.state_dict().items(), whole.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-7, msg=name)
    assert [phase for phase, _ in model.calls] == [None, None]  # the default phase passes no phase argument


def test_clipping_uses_the_model_s_max_grad_norm():
    model = TwoHeads((UpdatePhase(loss="loss_b"),))
    model.max_grad_norm = 1e-3
    before = copy.deepcopy(model.b.state_dict())
    run_step(model, torch.randn(4, 3) * 100, torch.optim.SGD(model.parameters(), lr=1.0))
    moved = torch.cat([(model.b.state_dict()[k] - before[k]).reshape(-1) for k in before])
    assert moved.norm().item() == pytest.approx(1e-3, rel=1e-4)  # lr 1 x the clipped gradient
