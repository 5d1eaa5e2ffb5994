"""BatchNorm over the global batch of every process (MODEL.SYNC_BN), on CPU (gloo) as on CUDA.

torch's SyncBatchNorm runs on accelerators only; this one all-reduces the per-channel sums itself,
differentiably, in two passes (mean, then the centred sum of squares) as plain BatchNorm computes them.
Parameter and buffer names are BatchNorm's, so checkpoints load either way. In one process it is plain
BatchNorm.
"""
import torch
import torch.distributed.nn.functional as dist_fn
import torch.nn.functional as F
from torch import nn

from ..utils import comm


def _all_reduce_sum(tensor):
    return dist_fn.all_reduce(tensor) if comm.get_world_size() > 1 else tensor


class GlobalBatchNorm(nn.modules.batchnorm._BatchNorm):
    """``BatchNorm{1,2,3}d`` whose training statistics are those of the batch of all processes."""

    def _check_input_dim(self, input):
        if input.dim() < 2:
            raise ValueError(f"expected at least 2-D input, got {input.dim()}-D")

    def forward(self, x):
        if not self.training or comm.get_world_size() == 1:
            return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                                self.training or not self.track_running_stats, self.momentum or 0.0, self.eps)
        dims = [0] + list(range(2, x.dim()))
        count = _all_reduce_sum(x.new_tensor([x.numel() / x.shape[1]]))
        mean = _all_reduce_sum(x.sum(dim=dims)) / count
        shape = [1, -1] + [1] * (x.dim() - 2)
        centred = x - mean.view(shape)
        var = _all_reduce_sum((centred * centred).sum(dim=dims)) / count  # biased, for normalising
        with torch.no_grad():
            self.num_batches_tracked += 1
            momentum = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
            self.running_mean.mul_(1 - momentum).add_(mean.detach(), alpha=momentum)
            unbiased = var.detach() * count / (count - 1).clamp(min=1)
            self.running_var.mul_(1 - momentum).add_(unbiased, alpha=momentum)
        out = centred * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            out = out * self.weight.view(shape) + self.bias.view(shape)
        return out


def convert_to_global_batch_norm(module):
    """Replace every BatchNorm layer of ``module`` (in place, state kept) by a ``GlobalBatchNorm``."""
    for name, child in module.named_children():
        if isinstance(child, nn.modules.batchnorm._BatchNorm) and not isinstance(child, GlobalBatchNorm):
            new = GlobalBatchNorm(child.num_features, child.eps, child.momentum, child.affine,
                                  child.track_running_stats).to(next(child.buffers()).device)
            new.load_state_dict(child.state_dict())
            setattr(module, name, new)
        else:
            convert_to_global_batch_norm(child)
    return module
