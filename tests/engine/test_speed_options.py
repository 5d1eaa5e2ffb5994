"""Opt-in speed options keep the math (channels_last), stay close (bf16 autocast) and keep checkpoint keys."""
import os

import torch

from mmn.config import load_config
from mmn.modeling import build_dataset
from mmn.modeling.mmn.data import MMNCollator
from mmn.modeling import build_model
from mmn.utils.checkpoint import load_model_weights
from mmn.utils.speed import apply_speed_options, autocast

from helpers.paths import PARITY_DIR as PARITY
CPU = torch.device("cpu")


def _setup(text_encoder, *opts):
    cfg = load_config(os.path.join(PARITY, "config.yaml"), [
        "MODEL.DEVICE", "cpu", "MODEL.MMN.TEXT_ENCODER.PRETRAINED", text_encoder,
        "DATASETS.ROOT", os.path.join(PARITY, "dataset"), *opts])
    model = build_model(cfg)
    load_model_weights(model, os.path.join(PARITY, "checkpoint_init.pth"))
    model = apply_speed_options(model, cfg, CPU).eval()
    dataset = build_dataset(cfg, "charades_test")
    batch = MMNCollator()([dataset[i] for i in range(len(dataset))])
    with torch.no_grad(), autocast(cfg.MODEL.AMP, CPU):
        out = model(batch)
    return cfg, model, out


def test_channels_last_same_scores(parity_text_encoder_dir):
    _, _, ref = _setup(parity_text_encoder_dir)
    _, model, out = _setup(parity_text_encoder_dir, "MODEL.CHANNELS_LAST", "True")
    assert model.proposal_conv.convs[0].weight.is_contiguous(memory_format=torch.channels_last)
    for key in ("contrastive", "iou"):
        assert (out[key].float() - ref[key]).abs().max() < 1e-5


def test_bf16_autocast_close_and_losses_fp32(parity_text_encoder_dir):
    _, _, ref = _setup(parity_text_encoder_dir)
    cfg, model, out = _setup(parity_text_encoder_dir, "MODEL.AMP", "True")
    diff = (out["iou"].float() - ref["iou"]).abs().max().item()
    assert 0 < diff < 0.05  # bf16 really ran, and stayed close
    model.train()
    dataset = build_dataset(cfg, "charades_train")
    batch = MMNCollator()([dataset[i] for i in range(4)])
    with autocast(cfg.MODEL.AMP, CPU):
        losses = model(batch)
    assert all(v.dtype == torch.float32 for v in losses.values())


def test_compile_keeps_checkpoint_keys(parity_text_encoder_dir):
    cfg = load_config(os.path.join(PARITY, "config.yaml"), [
        "MODEL.DEVICE", "cpu", "MODEL.MMN.TEXT_ENCODER.PRETRAINED", parity_text_encoder_dir, "MODEL.COMPILE", "True"])
    plain = set(build_model(cfg).state_dict())
    compiled = apply_speed_options(build_model(cfg), cfg, CPU)  # compilation itself is lazy: no forward here
    assert set(compiled.state_dict()) == plain
