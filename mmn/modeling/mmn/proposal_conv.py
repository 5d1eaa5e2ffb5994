"""Stacked 2D convolutions over the moment map, re-weighted so that padding does not leak in."""
import torch
import torch.nn.functional as F
from torch import nn


def mask_weights(mask2d, convs):
    """Per conv layer, the official mask weight: 1 / (number of valid inputs under the kernel).

    Starting from ``mask2d``, each layer convolves the previous (padded) mask with a ones kernel of
    that layer's size, stride, padding and dilation, rounds, and inverts the non-zero counts; the
    next mask is weight > 0. Computed once: it depends only on the mask, not on the features.
    """
    weights = []
    mask = mask2d[None, None].float()
    for conv in convs:
        ones = torch.ones(1, 1, *conv.kernel_size, device=mask.device)
        count = torch.round(F.conv2d(mask, ones, stride=conv.stride, padding=conv.padding, dilation=conv.dilation))
        weight = torch.where(count > 0, 1 / count.clamp(min=1), torch.zeros_like(count))
        weights.append(weight[0, 0])
        mask = (weight > 0).float()
    return weights


class ProposalConv(nn.Module):
    def __init__(self, input_size, hidden_size, kernel_size, num_stack_layers, output_size, mask2d):
        super().__init__()
        first_padding = (kernel_size - 1) * num_stack_layers // 2
        self.convs = nn.ModuleList([nn.Conv2d(input_size, hidden_size, kernel_size, padding=first_padding)])
        self.bn = nn.ModuleList([nn.BatchNorm2d(hidden_size)])
        for _ in range(num_stack_layers - 1):
            self.convs.append(nn.Conv2d(hidden_size, hidden_size, kernel_size))
            self.bn.append(nn.BatchNorm2d(hidden_size))
        self.conv1x1_iou = nn.Conv2d(hidden_size, output_size, 1)
        self.conv1x1_contrastive = nn.Conv2d(hidden_size, output_size, 1)
        for k, weight in enumerate(mask_weights(mask2d, self.convs)):
            self.register_buffer(f"mask_weight_{k}", weight, persistent=False)

    def forward(self, x):
        """x: B x H x N x N -> (contrastive map, iou map), each B x JOINT x N x N."""
        for k, (conv, bn) in enumerate(zip(self.convs, self.bn)):
            x = bn(conv(x)).relu() * getattr(self, f"mask_weight_{k}")
        return self.conv1x1_contrastive(x), self.conv1x1_iou(x)
