"""Sparse 2D moment map (2D-TAN): cell (i, j) holds the feature of clips i..j."""
import torch
from torch import nn

from ...structures.moment_map import sparse_moment_cells
from ...utils.errors import ConfigError


class _SparseMap(nn.Module):
    def __init__(self, pooling_counts, num_clips):
        super().__init__()
        mask2d, cells = sparse_moment_cells(pooling_counts, num_clips)
        self.register_buffer("mask2d", mask2d, persistent=False)
        self._cells = cells

    def _reducers(self):
        raise NotImplementedError

    def forward(self, x):
        """x: B x H x N -> B x H x N x N (zeros outside mask2d)."""
        b, h, n = x.shape
        map2d = x.new_zeros(b, h, n, n)
        diag = torch.arange(n, device=x.device)
        map2d[:, :, diag, diag] = x
        for reduce, (i, j) in zip(self._reducers(), self._cells):
            x = reduce(x)
            map2d[:, :, i, j] = x
        return map2d


class SparseMaxPool(_SparseMap):
    """Official "pool" map: MaxPool1d(2, 1) steps, MaxPool1d(3, 2) at the start of each later group."""

    def __init__(self, pooling_counts, num_clips):
        super().__init__(pooling_counts, num_clips)
        pools = [nn.MaxPool1d(2, 1) for _ in range(pooling_counts[0])]
        for count in pooling_counts[1:]:
            pools.extend([nn.MaxPool1d(3, 2)] + [nn.MaxPool1d(2, 1) for _ in range(count - 1)])
        self.pools = pools  # parameter-free: kept out of the state dict as in the official code

    def _reducers(self):
        return self.pools


class SparseConv(_SparseMap):
    """Official "conv" map: the same steps with Conv1d(H, H, 2, 1) / Conv1d(H, H, 3, 2)."""

    def __init__(self, pooling_counts, num_clips, hidden_size):
        super().__init__(pooling_counts, num_clips)
        self.convs = nn.ModuleList([nn.Conv1d(hidden_size, hidden_size, 2, 1) for _ in range(pooling_counts[0])])
        for count in pooling_counts[1:]:
            self.convs.extend([nn.Conv1d(hidden_size, hidden_size, 3, 2)]
                              + [nn.Conv1d(hidden_size, hidden_size, 2, 1) for _ in range(count - 1)])

    def _reducers(self):
        return self.convs


def build_feat2d(cfg):
    mmn = cfg.MODEL.MMN
    counts, n = list(mmn.FEAT2D.POOLING_COUNTS), mmn.NUM_CLIPS
    if mmn.FEAT2D.NAME == "pool":
        return SparseMaxPool(counts, n)
    if mmn.FEAT2D.NAME == "conv":
        return SparseConv(counts, n, mmn.FEATPOOL.HIDDEN_SIZE)
    raise ConfigError(f"MODEL.MMN.FEAT2D.NAME must be 'pool' or 'conv', got {mmn.FEAT2D.NAME!r}")
