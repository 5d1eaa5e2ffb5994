"""Train the parity fixture through the real engine, recording every update; in one process or under torchrun.

    [torchrun --nproc_per_node=2] tests/helpers/shard_run.py TEXT_ENCODER_DIR OUTPUT_DIR [--resume] [KEY VALUE ...]

Rank 0 writes OUTPUT_DIR/steps.pt: per update the losses (mean over processes), the gradients the
optimiser stepped with (after DDP's averaging and clipping), then the final weights.
"""
import os
import sys

import torch

from mmn import engine
from mmn.config import load_config
from mmn.engine import trainer
from mmn.utils import comm
from mmn.utils.checkpoint import Checkpointer
from mmn.utils.comm import unwrap_model

HERE = os.path.dirname(os.path.abspath(__file__))
PARITY = os.path.join(HERE, "..", "fixtures", "parity")


def main(text_encoder, output_dir, *rest):
    resume = "last" if "--resume" in rest else None
    opts = [a for a in rest if a != "--resume"]
    torch.set_num_threads(1)
    cfg = load_config(os.path.join(PARITY, "config.yaml"), [
        "MODEL.DEVICE", "cpu", "MODEL.MMN.TEXT_ENCODER.PRETRAINED", text_encoder,
        "DATASETS.ROOT", os.path.join(PARITY, "dataset"), "OUTPUT_DIR", output_dir, "SEED", "7",
        "SOLVER.BATCH_SIZE", "4", "SOLVER.FREEZE_BERT", "0", "DATALOADER.NUM_WORKERS", "0", *opts])
    device = comm.init_distributed(torch.device("cpu"))
    steps = []
    original = trainer.run_step

    def recording_step(model, batch, optimizer, epoch=1, amp=False):
        losses = original(model, batch, optimizer, epoch, amp)
        mean = torch.tensor([losses[k] for k in sorted(losses)], dtype=torch.float64)
        if comm.get_world_size() > 1:
            torch.distributed.all_reduce(mean)
            mean /= comm.get_world_size()
        steps.append({"losses": dict(zip(sorted(losses), mean.tolist())),
                      "grads": {n: p.grad.clone() for n, p in unwrap_model(model).named_parameters()
                                if p.grad is not None}})
        return losses

    trainer.run_step = recording_step  # the engine's one training step, as train_one_epoch calls it
    os.makedirs(output_dir, exist_ok=True)
    engine.train(cfg, device, resume=resume)
    if comm.is_main_process():
        last = Checkpointer(output_dir).last_checkpoint()
        state = torch.load(last, map_location="cpu", weights_only=False)["model"]
        torch.save({"steps": steps, "weights": state}, os.path.join(output_dir, "steps.pt"))
    comm.synchronize()
    if comm.is_distributed():
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main(*sys.argv[1:])
