"""CNM's two optimisers and their learning-rate schedule, as the release.

- ``FairseqAdam``: the release's Adam (from fairseq), which differs from ``torch.optim.Adam`` in where
  epsilon sits: p -= lr * sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + eps) (torch divides sqrt(v)
  by sqrt(1 - b2^t) before adding eps). The difference shows for gradients of order eps.
- ``InverseSqrtSchedule``: linear warm-up from ``warmup_init_lr`` to ``lr`` over ``warmup_updates``
  updates, then lr * sqrt(warmup_updates / update).
- ``CNMOptimizers``: the reconstructor's and the generator's optimiser and schedule, stepped together
  once per batch, with ``state_dict``/``load_state_dict`` for checkpoints.
"""
import math

import torch


class FairseqAdam(torch.optim.Optimizer):
    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                grad = p.grad
                state = self.state[p]
                if len(state) == 0:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p)
                    state["exp_avg_sq"] = torch.zeros_like(p)
                exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
                state["step"] += 1
                exp_avg.mul_(beta1).add_(grad, alpha=1 - beta1)
                exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
                denom = exp_avg_sq.sqrt().add_(group["eps"])
                step_size = group["lr"] * math.sqrt(1 - beta2 ** state["step"]) / (1 - beta1 ** state["step"])
                if group["weight_decay"] != 0:
                    p.add_(p, alpha=-group["weight_decay"] * group["lr"])
                p.addcdiv_(exp_avg, denom, value=-step_size)
        return loss


class InverseSqrtSchedule:
    """Sets the optimiser's lr after each update (``step_update``); starts at ``warmup_init_lr``."""

    def __init__(self, optimizer, lr, warmup_updates, warmup_init_lr):
        if warmup_updates < 1:
            raise ValueError(f"warmup_updates must be >= 1, got {warmup_updates}")
        self.optimizer = optimizer
        self.warmup_init_lr = warmup_init_lr
        self.warmup_updates = warmup_updates
        self.lr_step = (lr - warmup_init_lr) / warmup_updates
        self.decay_factor = lr * warmup_updates ** 0.5
        self._set(warmup_init_lr)

    def lr_at(self, num_updates):
        if num_updates < self.warmup_updates:
            return self.warmup_init_lr + num_updates * self.lr_step
        return self.decay_factor * num_updates ** -0.5

    def _set(self, lr):
        self.lr = lr
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def step_update(self, num_updates):
        self._set(self.lr_at(num_updates))
        return self.lr


class CNMOptimizers:
    """The reconstructor's and the generator's optimisers (``self["reconstructor"]``, ``self["generator"]``:
    the update phases name them); ``step_update`` once per batch."""

    def __init__(self, reconstructor_params, generator_params, lr, warmup_updates, warmup_init_lr,
                 betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        self.rec = FairseqAdam(list(reconstructor_params), lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)
        self.gen = FairseqAdam(list(generator_params), lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)
        self.rec_schedule = InverseSqrtSchedule(self.rec, lr, warmup_updates, warmup_init_lr)
        self.gen_schedule = InverseSqrtSchedule(self.gen, lr, warmup_updates, warmup_init_lr)
        self.num_updates = 0

    def __getitem__(self, name):
        return {"reconstructor": self.rec, "generator": self.gen}[name]

    @property
    def lr(self):
        return self.rec_schedule.lr

    @property
    def param_groups(self):
        """Both optimisers' parameter groups (reconstructor first), as a torch optimiser's."""
        return self.rec.param_groups + self.gen.param_groups

    def step_update(self):
        self.num_updates += 1
        self.rec_schedule.step_update(self.num_updates)
        self.gen_schedule.step_update(self.num_updates)

    def state_dict(self):
        return {"rec": self.rec.state_dict(), "gen": self.gen.state_dict(), "num_updates": self.num_updates}

    def load_state_dict(self, state):
        self.rec.load_state_dict(state["rec"])
        self.gen.load_state_dict(state["gen"])
        self.num_updates = int(state["num_updates"])
        self.rec_schedule.step_update(self.num_updates)
        self.gen_schedule.step_update(self.num_updates)
