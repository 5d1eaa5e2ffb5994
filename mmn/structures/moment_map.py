"""The sparse 2D moment map shared by the map-based models: which cells a stack of pooling
steps fills, and the mask weights of convolutions over it."""
import torch
import torch.nn.functional as F


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
