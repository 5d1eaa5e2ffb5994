"""Sparse 2D moment map (2D-TAN): cell (i, j) holds the feature of clips i..j."""
import torch
from torch import nn

from ...config.loading import ConfigError


def sparse_moment_cells(pooling_counts, num_clips):
    """The valid-cell mask (N x N bool) and, per pooling step, the (rows, cols) it fills.

    Diagonal offsets grow by ``stride``; the stride doubles after each group of POOLING_COUNTS.
    """
    n = num_clips
    mask2d = torch.zeros(n, n, dtype=torch.bool)
    mask2d[range(n), range(n)] = True
    stride, offset = 1, 0
    cells = []
    for count in pooling_counts:
        for _ in range(count):
            offset += stride
            i, j = list(range(0, n - offset, stride)), list(range(offset, n, stride))
            mask2d[i, j] = True
            cells.append((i, j))
        stride *= 2
    return mask2d, cells


def sparse_map_lengths(pooling_counts, num_clips):
    """Why the pooling steps of ``pooling_counts`` cannot fill an N x N map, or "" when they can.

    Each step shortens the sequence (kernel 2 stride 1, or kernel 3 stride 2 at a group's start) and
    writes it on one diagonal, so its output length must equal that diagonal's number of cells.
    """
    _, cells = sparse_moment_cells(pooling_counts, num_clips)
    length, step = num_clips, 0
    for group, count in enumerate(pooling_counts):
        for k in range(count):
            kernel, stride = (3, 2) if group > 0 and k == 0 else (2, 1)
            if length < kernel:
                return f"pooling step {step + 1} needs at least {kernel} clips, {length} are left"
            length = (length - kernel) // stride + 1
            if length != len(cells[step][0]):
                return (f"pooling step {step + 1} gives {length} cells for a diagonal of {len(cells[step][0])}; "
                        "fewer or smaller pooling counts fit")
            step += 1
    return ""


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
