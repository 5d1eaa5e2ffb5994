"""2D-TAN's optimiser and schedule (official ``moment_localization/train.py:101-103,198-202``).

Adam (betas 0.9 / 0.999, eps 1e-8, weight decay as L2 added to the gradient: ``torch.optim.Adam``, not
AdamW) and ReduceLROnPlateau(mode "min", FACTOR, PATIENCE, relative threshold 1e-4), stepped after
each evaluation on MINUS the validation loss, as the official code does: in mode "min" an evaluation
is an improvement only when the validation loss RISES above (1 - 1e-4) x its highest value so far,
so a falling validation loss cuts the learning rate once PATIENCE + 1 evaluations bring no rise. With
no validation split (the official Charades configs: NO_VAL) the scheduler never steps.
``MODEL.TAN.SOLVER.PLATEAU_SIGN`` +1 gives the plateau on the loss itself.
"""
import torch


def build_tan_optimizer(params, cfg):
    s = cfg.MODEL.TAN.SOLVER
    optimizer = torch.optim.Adam(params, lr=s.LR, betas=(0.9, 0.999), eps=1e-8, weight_decay=s.WEIGHT_DECAY)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="min", factor=s.FACTOR,
                                                           patience=s.PATIENCE)
    return optimizer, scheduler


def validation_loss(record):
    """The validation loss of an epoch record: ``record["val"]["loss"]`` (the engine's evaluation of
    DATASETS.VAL: the mean of its batch losses); None when there is no validation split."""
    val = record.get("val") if isinstance(record, dict) else None
    if isinstance(val, dict) and val.get("loss") is not None:
        return float(val["loss"])
    return None


def step_plateau(scheduler, record, sign=-1.0):
    """Step ReduceLROnPlateau on ``sign`` x the validation loss; no step without one (NO_VAL)."""
    loss = validation_loss(record)
    if scheduler is not None and loss is not None:
        scheduler.step(sign * loss)
        return True
    return False
