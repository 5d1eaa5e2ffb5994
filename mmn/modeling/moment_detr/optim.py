"""Moment-DETR's optimiser and schedule (official ``moment_detr/inference.py`` ``setup_model``): AdamW over
every trainable parameter (lr, weight_decay=wd; betas 0.9 / 0.999, eps 1e-8) and StepLR(step_size=lr_drop,
gamma 0.1), stepped once per epoch after training."""
import torch


def build_moment_detr_optimizer(model, cfg):
    """(AdamW, StepLR) of MODEL.MOMENT_DETR.SOLVER for ``model``."""
    s = cfg.MODEL.MOMENT_DETR.SOLVER
    params = [{"params": [p for p in model.parameters() if p.requires_grad]}]
    optimizer = torch.optim.AdamW(params, lr=s.LR, weight_decay=s.WD)
    return optimizer, torch.optim.lr_scheduler.StepLR(optimizer, s.LR_DROP)
