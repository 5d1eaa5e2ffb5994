"""torch.distributed helpers that also work in a plain single process."""
import os

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel


def unwrap_model(model):
    """The model inside a DistributedDataParallel wrapper, or ``model`` itself."""
    return model.module if isinstance(model, DistributedDataParallel) else model


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


class _GatherWithGrad(torch.autograd.Function):
    """all_gather whose backward hands every rank the sum over ranks of the gradient of its own slice
    (all_reduce, which every backend has, instead of reduce_scatter, which gloo lacks)."""

    @staticmethod
    def forward(ctx, tensor, sizes):
        ctx.sizes, ctx.rank = sizes, get_rank()
        padded = tensor.new_zeros((max(sizes),) + tuple(tensor.shape[1:]))
        padded[: tensor.shape[0]] = tensor
        parts = [torch.empty_like(padded) for _ in sizes]
        dist.all_gather(parts, padded.contiguous())
        return torch.cat([part[:n] for part, n in zip(parts, sizes)])

    @staticmethod
    def backward(ctx, grad):
        grad = grad.contiguous()
        dist.all_reduce(grad)
        start = sum(ctx.sizes[: ctx.rank])
        return grad[start:start + ctx.sizes[ctx.rank]], None


def gather_with_grad(tensor):
    """Concatenate ``tensor`` (first dimensions may differ) of every rank in rank order, differentiably:
    gradients flow back to the rank that owns each row. The tensor itself when not distributed."""
    if not is_distributed() or get_world_size() == 1:
        return tensor
    sizes = [int(n) for n in all_gather_objects(tensor.shape[0])]
    return _GatherWithGrad.apply(tensor, sizes)


def average_gradients(parameters):
    """Average the gradients of ``parameters`` over ranks in place (for models that update without DDP)."""
    if not is_distributed() or get_world_size() == 1:
        return
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= get_world_size()
    offset = 0
    for g in grads:
        g.copy_(flat[offset:offset + g.numel()].view_as(g))
        offset += g.numel()


def broadcast_module(module, src=0, buffers_only=False):
    """Copy rank ``src``'s parameters and buffers (or its buffers only) to every rank."""
    if not is_distributed() or get_world_size() == 1:
        return
    with torch.no_grad():
        for tensor in ([] if buffers_only else list(module.parameters())) + list(module.buffers()):
            dist.broadcast(tensor.data, src)
