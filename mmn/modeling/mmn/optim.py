"""MMN's optimiser and learning-rate schedule, as the official code builds them."""
import torch


def build_mmn_optimizer(cfg, model):
    """(AdamW, MultiStepLR). AdamW(betas (0.9, 0.99), weight decay 1e-5) with two groups: every parameter but
    the text encoder's BERT at SOLVER.LR, the BERT at SOLVER.LR x 0.1, as the official optimiser (whose state
    dicts then load). MultiStepLR at SOLVER.MILESTONES (gamma 0.1), stepped once per epoch."""
    slow = {id(p) for p in model.text_encoder.bert.parameters()}
    params = [p for p in model.parameters() if id(p) not in slow]
    slow_params = [p for p in model.parameters() if id(p) in slow]
    groups = [{"params": params, "lr": cfg.SOLVER.LR}, {"params": slow_params, "lr": cfg.SOLVER.LR * 0.1}]
    optimizer = torch.optim.AdamW(groups, betas=(0.9, 0.99), weight_decay=1e-5)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=list(cfg.SOLVER.MILESTONES), gamma=0.1)
    return optimizer, scheduler
