"""Train CNM on a small synthetic dataset under torchrun; rank 0 writes whether every rank ends with the
same weights (and the weights).

    torchrun --nproc_per_node=2 tests/helpers/cnm_ddp.py DATA_DIR OUTPUT_DIR
"""
import os
import sys

import torch

from mmn import engine
from mmn.config import load_config
from mmn.demo.__main__ import DEMO_GLOVE, DEMO_MODELS
from mmn.engine import trainer
from mmn.utils import comm


def main(data_dir, output_dir):
    torch.set_num_threads(1)
    cfg = load_config(DEMO_MODELS["cnm"][0], [
        "DATASETS.ROOT", data_dir, "OUTPUT_DIR", output_dir, "MODEL.CNM.GLOVE", DEMO_GLOVE, "MODEL.DEVICE", "cpu",
        "SOLVER.MAX_EPOCH", "1", "SOLVER.TEST_PERIOD", "1", "SOLVER.BATCH_SIZE", "8", "SEED", "5"])
    device = comm.init_distributed(torch.device("cpu"))
    trained = {}
    do_train = trainer.do_train

    def keep_model(cfg, model, *args, **kwargs):
        trained["model"] = model
        return do_train(cfg, model, *args, **kwargs)

    trainer.do_train = keep_model  # what engine.train calls
    engine.train(cfg, device)
    flat = torch.cat([p.detach().reshape(-1) for p in trained["model"].parameters()])
    every_rank = comm.all_gather_objects(flat)
    if comm.is_main_process():
        torch.save({"world": comm.get_world_size(), "ranks": every_rank}, os.path.join(output_dir, "cnm_ddp.pt"))
    torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main(*sys.argv[1:])
