"""Run under torchrun: one DDP training step on the parity fixture; rank 0 saves the averaged gradients.

    torchrun --nproc_per_node=2 tests/helpers/ddp_step.py TEXT_ENCODER_DIR OUT.pt
"""
import os
import sys

import torch

from mmn.config import load_config
from mmn.modeling import build_dataset
from mmn.modeling.mmn.data import MMNCollator
from mmn.engine import wrap_model
from mmn.modeling import build_model
from mmn.utils import comm
from mmn.utils.checkpoint import load_model_weights

HERE = os.path.dirname(os.path.abspath(__file__))
PARITY = os.path.join(HERE, "..", "fixtures", "parity")
VIDEOS = [3, 7, 0, 5]  # the global batch; rank r takes its half


def main(text_encoder, out):
    cfg = load_config(os.path.join(PARITY, "config.yaml"), [
        "MODEL.DEVICE", "cpu", "MODEL.MMN.TEXT_ENCODER.PRETRAINED", text_encoder,
        "DATASETS.ROOT", os.path.join(PARITY, "dataset")])
    device = comm.init_distributed(torch.device("cpu"))
    rank, world = comm.get_rank(), comm.get_world_size()
    assert world == 2, world
    model = build_model(cfg)
    load_model_weights(model, os.path.join(PARITY, "checkpoint_init.pth"))
    model.set_epoch(2)  # BERT trainable too
    model = wrap_model(model, device)
    model.train()
    dataset = build_dataset(cfg, "charades_train")
    half = len(VIDEOS) // world
    batch = MMNCollator()([dataset[i] for i in VIDEOS[rank * half:(rank + 1) * half]])
    model(batch, epoch=2)["loss"].backward()
    if rank == 0:
        grads = {n: p.grad.clone() for n, p in model.module.named_parameters() if p.grad is not None}
        torch.save(grads, out)
    comm.synchronize()
    torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
