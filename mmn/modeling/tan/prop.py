"""2D-TAN's sparse moment map: cell (i, j) holds the feature of clips i..j (official ``sparse.py``).

The geometry (which cells, filled by which layer) is MMN's ``sparse_moment_cells``: 2D-TAN's
NUM_SCALE_LAYERS [L0, L1, ...] are MMN's POOLING_COUNTS [L0 - 1, L1, ...] (2D-TAN counts the diagonal
as the first layer of scale 0). Each scale's first layer (MaxPool1d(1, 1) / Conv1d(H, H, 1) for scale 0,
MaxPool1d(3, 2) / Conv1d(H, H, 3, 2) later) and the following (2, 1) layers are applied in turn, each to
the previous output, and written to its diagonal of the map in one indexed assignment per layer.
"""
import torch
from torch import nn

from ...structures.moment_map import sparse_moment_cells


def tan_moment_cells(num_scale_layers, num_clips):
    """(mask T x T bool, per layer in application order the (rows, cols) it fills, diagonal first)."""
    counts = [num_scale_layers[0] - 1] + list(num_scale_layers[1:])
    mask, cells = sparse_moment_cells(counts, num_clips)
    diag = list(range(num_clips))
    return mask, [(diag, diag)] + cells


def check_scale_layers(num_scale_layers, num_clips):
    """The layers whose input is too short (the official code skips them silently, ``sparse.py:27-30``)
    or whose output does not fit its cells; returns a list of problems (empty when the config is sound)."""
    problems, length = [], num_clips
    _, cells = tan_moment_cells(num_scale_layers, num_clips)
    k = 0
    for scale, layers in enumerate(num_scale_layers):
        for i in range(layers):
            kernel, stride = (1, 1) if (scale == 0 and i == 0) else ((3, 2) if i == 0 else (2, 1))
            if length < kernel:
                problems.append(f"scale {scale} layer {i}: input of {length} clips is shorter than its kernel {kernel}")
                return problems
            length = (length - kernel) // stride + 1
            if length != len(cells[k][0]):
                problems.append(f"scale {scale} layer {i}: {length} outputs for {len(cells[k][0])} cells")
                return problems
            k += 1
    return problems


class _SparseProp(nn.Module):
    def __init__(self, num_scale_layers, num_clips):
        super().__init__()
        mask, cells = tan_moment_cells(num_scale_layers, num_clips)
        self.register_buffer("mask2d", mask, persistent=False)
        self._cells = [(torch.tensor(i, dtype=torch.long), torch.tensor(j, dtype=torch.long)) for i, j in cells]
        self.num_clips = num_clips

    def _layers(self):
        raise NotImplementedError

    def forward(self, x):
        """x: B x H x T -> (map_h B x H x T x T, zero outside the mask; map_mask B x 1 x T x T float)."""
        b, h, n = x.shape
        map_h = x.new_zeros(b, h, n, n)
        for layer, (rows, cols) in zip(self._layers(), self._cells):
            x = layer(x)
            map_h[:, :, rows.to(x.device), cols.to(x.device)] = x
        map_mask = self.mask2d.to(x.dtype)[None, None].expand(b, 1, n, n).contiguous()
        return map_h, map_mask


class SparsePropMaxPool(_SparseProp):
    """Official "pool" map: a cell holds the max over exactly its clips. Parameter-free."""

    def __init__(self, num_scale_layers, num_clips):
        super().__init__(num_scale_layers, num_clips)
        layers = []
        for scale, count in enumerate(num_scale_layers):
            first = nn.MaxPool1d(1, 1) if scale == 0 else nn.MaxPool1d(3, 2)
            layers.extend([first] + [nn.MaxPool1d(2, 1) for _ in range(1, count)])
        self._pools = layers  # plain list: no entries in the state dict, as the official ModuleList of pools

    def _layers(self):
        return self._pools


class SparsePropConv(_SparseProp):
    """Official "conv" map: the same steps with Conv1d(H, H, 1) / Conv1d(H, H, 3, 2) / Conv1d(H, H, 2, 1).

    Parameters ``layers.{scale}.{layer}.weight/bias`` as the official state dict.
    """

    def __init__(self, num_scale_layers, num_clips, hidden_size):
        super().__init__(num_scale_layers, num_clips)
        self.layers = nn.ModuleList()
        for scale, count in enumerate(num_scale_layers):
            first = nn.Conv1d(hidden_size, hidden_size, 1, 1) if scale == 0 else nn.Conv1d(hidden_size, hidden_size, 3, 2)
            self.layers.append(nn.ModuleList([first] + [nn.Conv1d(hidden_size, hidden_size, 2, 1)
                                                        for _ in range(1, count)]))

    def _layers(self):
        return [layer for scale in self.layers for layer in scale]
