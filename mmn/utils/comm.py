"""torch.distributed helpers that also work in a plain single process."""
import os

import torch
import torch.distributed as dist


def is_distributed():
    return dist.is_available() and dist.is_initialized()


def get_world_size():
    return dist.get_world_size() if is_distributed() else 1


def get_rank():
    return dist.get_rank() if is_distributed() else 0


def is_main_process():
    return get_rank() == 0


def synchronize():
    if is_distributed() and get_world_size() > 1:
        dist.barrier()


def init_distributed(device):
    """Initialise the process group when launched by torchrun (WORLD_SIZE set); nccl on CUDA, gloo on CPU.

    Returns the device this process uses (cuda:LOCAL_RANK under torchrun on GPUs)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1 or is_distributed():
        return device
    if device.type == "cuda":
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
    dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return device


def all_gather_objects(obj):
    """List of ``obj`` from every rank (a one-element list when not distributed)."""
    if not is_distributed() or get_world_size() == 1:
        return [obj]
    out = [None] * get_world_size()
    dist.all_gather_object(out, obj)
    return out
