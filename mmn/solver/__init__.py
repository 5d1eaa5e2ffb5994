"""Optimiser and learning-rate schedule of the official MMN."""
import torch


def make_optimizer(cfg, model):
    """AdamW(betas (0.9, 0.99), weight decay 1e-5); the model's ``slow_parameters()`` (MMN: its BERT) at
    lr x 0.1 in a second group, as the official optimiser (whose state dicts then load)."""
    slow = {id(p) for p in model.slow_parameters()}
    params = [p for p in model.parameters() if id(p) not in slow]
    slow_params = [p for p in model.parameters() if id(p) in slow]
    groups = [{"params": params, "lr": cfg.SOLVER.LR}, {"params": slow_params, "lr": cfg.SOLVER.LR * 0.1}]
    return torch.optim.AdamW(groups, betas=(0.9, 0.99), weight_decay=1e-5)


def make_lr_scheduler(cfg, optimizer):
    """MultiStepLR at SOLVER.MILESTONES (gamma 0.1), stepped once per epoch."""
    return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=list(cfg.SOLVER.MILESTONES), gamma=0.1)
