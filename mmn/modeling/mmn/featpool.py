"""Clip features -> NUM_CLIPS hidden features (1x1 conv, ReLU, overlapping average pool)."""
from torch import nn


class FeatAvgPool(nn.Module):
    def __init__(self, input_size, hidden_size, kernel_size, stride):
        super().__init__()
        self.conv = nn.Conv1d(input_size, hidden_size, 1, 1)
        self.pool = nn.AvgPool1d(kernel_size, stride)

    def forward(self, x):
        """x: B x NUM_PRE_CLIPS x D -> B x H x NUM_CLIPS."""
        return self.pool(self.conv(x.transpose(1, 2)).relu())


def build_featpool(cfg):
    mmn = cfg.MODEL.MMN
    stride = cfg.INPUT.NUM_PRE_CLIPS // mmn.NUM_CLIPS
    return FeatAvgPool(mmn.FEATPOOL.INPUT_SIZE, mmn.FEATPOOL.HIDDEN_SIZE, mmn.FEATPOOL.KERNEL_SIZE, stride)
