"""2D-TAN's map convolutions (official ``map_conv.py`` and ``get_padded_mask_and_weight``).

Each layer: x = ReLU(conv(x)) x w, where w = 1 / (number of valid cells under the kernel), 0 where
there are none, and the next layer's mask is w > 0. The weights depend only on the moment-map mask,
so they are MMN's ``mask_weights`` (the same rule, computed once instead of per batch). The first
layer pads (official configs: PADDINGS [16, 0, ...]) and later ones shrink the map back to T x T; the
output is not re-masked (the prediction layer is).
"""
from torch import nn

from ...structures.moment_map import mask_weights


class MapConv(nn.Module):
    def __init__(self, input_size, hidden_sizes, kernel_sizes, strides, paddings, dilations, mask2d):
        super().__init__()
        channels = [input_size] + list(hidden_sizes)
        self.convs = nn.ModuleList([nn.Conv2d(channels[k], channels[k + 1], kernel_sizes[k], strides[k], paddings[k],
                                              dilations[k]) for k in range(len(hidden_sizes))])
        for k, weight in enumerate(mask_weights(mask2d, self.convs)):
            self.register_buffer(f"mask_weight_{k}", weight, persistent=False)

    def masked_weights(self):
        """Per layer, the official ``masked_weight`` (H_k x W_k: 1 / count, 0 outside the padded mask)."""
        return [getattr(self, f"mask_weight_{k}") for k in range(len(self.convs))]

    def forward(self, x, return_layers=False):
        """x: B x C x T x T fused map -> B x C' x T x T; ``return_layers``: also each layer's conv output."""
        layers = []
        for conv, weight in zip(self.convs, self.masked_weights()):
            y = conv(x)
            layers.append(y)
            x = y.relu() * weight.to(y.dtype)
        return (x, layers) if return_layers else x
