"""Moment-DETR's position embeddings (official ``moment_detr/position_encoding.py``).

The video tokens get a normalised 1-D sine embedding; the text tokens get zeros unless USE_TXT_POS, but the
learned text embedding (``txt_position_embed``) is built either way and its weights are in every official
checkpoint.
"""
import math

import torch
from torch import nn


class PositionEmbeddingSine(nn.Module):
    """Sine embedding of the valid-token count: x = cumsum(mask) / (its last value + 1e-6) x 2 pi (padded
    tokens repeat the last valid position), interleaved [sin(x / t_0), cos(x / t_1), sin(x / t_2), ...] with
    t_i = temperature ^ (2 (i // 2) / num_pos_feats)."""

    def __init__(self, num_pos_feats, temperature=10000, normalize=True, scale=None):
        super().__init__()
        if scale is not None and not normalize:
            raise ValueError("normalize should be True if scale is passed")
        self.num_pos_feats = num_pos_feats
        self.temperature = temperature
        self.normalize = normalize
        self.scale = 2 * math.pi if scale is None else scale

    def forward(self, x, mask):
        """``x`` (B, L, d) gives the device; ``mask`` (B, L), 1 = valid. Returns (B, L, num_pos_feats)."""
        position = mask.cumsum(1, dtype=torch.float32)
        if self.normalize:
            position = position / (position[:, -1:] + 1e-6) * self.scale
        dim_t = torch.arange(self.num_pos_feats, dtype=torch.float32, device=x.device)
        dim_t = self.temperature ** (2 * (dim_t // 2) / self.num_pos_feats)
        angles = position[:, :, None] / dim_t
        return torch.stack((angles[:, :, 0::2].sin(), angles[:, :, 1::2].cos()), dim=3).flatten(2)


class TrainablePositionalEncoding(nn.Module):
    """Learned positions added to the input, then LayerNorm and dropout (the official text embedding, used
    only with USE_TXT_POS)."""

    def __init__(self, max_position_embeddings, hidden_size, dropout=0.1):
        super().__init__()
        self.position_embeddings = nn.Embedding(max_position_embeddings, hidden_size)
        self.LayerNorm = nn.LayerNorm(hidden_size)
        self.dropout = nn.Dropout(dropout)

    def forward(self, input_feat):
        """``input_feat`` (B, L, d) -> (B, L, d)."""
        positions = torch.arange(input_feat.shape[1], dtype=torch.long, device=input_feat.device)
        return self.dropout(self.LayerNorm(input_feat + self.position_embeddings(positions)[None]))
