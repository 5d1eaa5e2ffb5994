"""Opt-in speed options (MODEL.AMP, MODEL.CHANNELS_LAST, MODEL.COMPILE); all off by default."""
import torch


def apply_speed_options(model, cfg, device):
    """Move ``model`` to ``device`` and apply the memory-format and compile options in place."""
    model = model.to(device)
    if cfg.MODEL.CHANNELS_LAST:  # only 4-D tensors change format: the 2D convolutions' weights (2D map convolutions)
        model.to(memory_format=torch.channels_last)
    if cfg.MODEL.COMPILE:
        model.compile()  # in place: state_dict keys stay those of the official checkpoints
    return model


def autocast(enabled, device):
    """bf16 autocast around forward passes when ``enabled`` (MODEL.AMP); the losses run in fp32 inside the model."""
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=enabled)
