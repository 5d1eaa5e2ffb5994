"""Stacked 2D convolutions over the moment map, re-weighted so that padding does not leak in."""
import torch
import torch.nn.functional as F
from torch import nn

from ...structures.moment_map import mask_weights


def plan_tiles(active, tile_rows):
    """Cover the active cells of one layer's output (H x W bool) with row bands.

    Each band of ``tile_rows`` rows keeps the column span [c0, c1) of its active cells, or None when
    it has none. For the upper-triangular moment map this skips most of the inactive lower-left area.
    """
    height = active.shape[0]
    tiles = []
    for r0 in range(0, height, tile_rows):
        r1 = min(height, r0 + tile_rows)
        cols = active[r0:r1].any(0).nonzero().flatten().tolist()
        tiles.append((r0, r1, cols[0], cols[-1] + 1) if cols else (r0, r1, None, None))
    return tiles


def tile_cost(tiles, kernel_size):
    """Relative conv cost of a tiling: forward and weight gradient scale with the output cells,
    the input gradient with the input cells (output plus the kernel's halo)."""
    halo = kernel_size - 1
    return sum(2 * (r1 - r0) * (c1 - c0) + (r1 - r0 + halo) * (c1 - c0 + halo)
               for r0, r1, c0, c1 in tiles if c0 is not None)


def auto_tiles(active, kernel_size, min_saving=0.1):
    """The band height with the lowest ``tile_cost``; None (dense conv) unless it saves ``min_saving``."""
    height, width = active.shape
    best = min((plan_tiles(active, rows) for rows in range(1, height + 1)), key=lambda t: tile_cost(t, kernel_size))
    dense = tile_cost([(0, height, 0, width)], kernel_size)
    return best if tile_cost(best, kernel_size) < (1 - min_saving) * dense else None


def tiled_conv2d(x, conv, tiles, width):
    """``conv(x)`` computed only inside ``tiles``; every other output cell gets the bias.

    Exact wherever the conv's receptive field outside the tiles sees only zeros, which holds for
    the cells whose mask weight is zero: there the dense conv outputs its bias as well.
    """
    pad, k = conv.padding[0], conv.kernel_size[0]
    if pad:
        x = F.pad(x, (pad, pad, pad, pad))
    rows = []
    for r0, r1, c0, c1 in tiles:
        if c0 is None:
            rows.append(x.new_zeros(x.shape[0], conv.out_channels, r1 - r0, width))
            continue
        y = F.conv2d(x[:, :, r0:r1 + k - 1, c0:c1 + k - 1], conv.weight)
        rows.append(F.pad(y, (c0, width - c1)))
    y = torch.cat(rows, 2)
    return y + conv.bias.to(y.dtype).view(1, -1, 1, 1)


class ProposalConv(nn.Module):
    """Stacked conv + BatchNorm + ReLU over the moment map, each output re-weighted by its mask.

    With ``tile_rows`` != 0 the convolutions are computed only over row bands covering the cells
    whose mask weight is non-zero (55-65% of the padded maps of the official configs). The other
    cells hold the conv bias, as in the dense computation, so BatchNorm's batch statistics and every
    output are the same up to float rounding. ``tile_rows`` > 0 fixes the band height, -1 picks it
    per layer (``auto_tiles``), 0 runs the plain dense convs.
    """

    def __init__(self, input_size, hidden_size, kernel_size, num_stack_layers, output_size, mask2d, tile_rows=0):
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
        self.tiles = [None] * num_stack_layers  # per layer: None = dense conv
        for k in range(num_stack_layers if tile_rows else 0):
            active = getattr(self, f"mask_weight_{k}") > 0
            self.tiles[k] = auto_tiles(active, kernel_size) if tile_rows < 0 else plan_tiles(active, tile_rows)

    def forward(self, x):
        """x: B x H x N x N, zero outside mask2d (as the moment map is; the tiled convs rely on it)
        -> (contrastive map, iou map), each B x JOINT x N x N."""
        for k, (conv, bn) in enumerate(zip(self.convs, self.bn)):
            weight = getattr(self, f"mask_weight_{k}")
            y = conv(x) if self.tiles[k] is None else tiled_conv2d(x, conv, self.tiles[k], weight.shape[1])
            x = bn(y).relu() * weight
        return self.conv1x1_contrastive(x), self.conv1x1_iou(x)
