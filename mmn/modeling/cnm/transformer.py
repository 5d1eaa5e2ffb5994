"""The release's ``DualTransformer``: two post-norm transformer decoders with causal self-attention.

``decoder1`` and ``decoder2`` are stacks of (causal self-attention, optional cross-attention,
ReLU FFN of width 2 x d_model), each sub-layer followed by dropout, the residual and LayerNorm.
EVERY self-attention is causal (future-masked), frames included, as in the release.

- mask generation (``generate``): words through ``decoder2`` (no cross-attention), then the frames
  through ``decoder1`` attending to the word states;
- reconstruction (``reconstruct``): proposal frames through ``decoder1`` with the mask weight in
  its self-attention, then the words through ``decoder2`` with the weight in the cross-attention.
The generator and the reconstructor share these weights.
"""
import math

import torch
import torch.nn.functional as F
from torch import nn

from .attention import MaskConditionedAttention


def future_mask(length, device=None, dtype=torch.float32):
    """T x T additive causal mask: -inf above the diagonal."""
    return torch.triu(torch.full((length, length), float("-inf"), device=device, dtype=dtype), 1)


def sinusoidal_embedding(num_positions, dim, padding_idx=0):
    """tensor2tensor sinusoids (sin half then cos half); row ``padding_idx`` is zero, as the release."""
    half = dim // 2
    scale = math.log(10000) / (half - 1)
    freqs = torch.exp(torch.arange(half, dtype=torch.float) * -scale)
    angles = torch.arange(num_positions, dtype=torch.float).unsqueeze(1) * freqs.unsqueeze(0)
    emb = torch.cat([torch.sin(angles), torch.cos(angles)], dim=1).view(num_positions, -1)
    if dim % 2 == 1:
        emb = torch.cat([emb, torch.zeros(num_positions, 1)], dim=1)
    if padding_idx is not None:
        emb[padding_idx, :] = 0
    return emb


class TransformerDecoderLayer(nn.Module):
    def __init__(self, d_model, num_heads, dropout=0.0):
        super().__init__()
        self.dropout = dropout
        self.self_attn = MaskConditionedAttention(d_model, num_heads)
        self.self_attn_layer_norm = nn.LayerNorm(d_model)
        self.encoder_attn = MaskConditionedAttention(d_model, num_heads)
        self.encoder_attn_layer_norm = nn.LayerNorm(d_model)
        self.fc1 = nn.Linear(d_model, d_model * 2)
        self.fc2 = nn.Linear(d_model * 2, d_model)
        self.final_layer_norm = nn.LayerNorm(d_model)

    def forward(self, x, padding, memory=None, memory_padding=None, self_attn_mask=None,
                memory_weight=None, self_weight=None):
        res = x
        x, weight = self.self_attn(x, x, padding, attn_mask=self_attn_mask, key_weight=self_weight)
        x = self.self_attn_layer_norm(res + F.dropout(x, self.dropout, self.training))
        if memory is not None:
            res = x
            x, weight = self.encoder_attn(x, memory, memory_padding, key_weight=memory_weight)
            x = self.encoder_attn_layer_norm(res + F.dropout(x, self.dropout, self.training))
        res = x
        x = self.fc2(F.relu(self.fc1(x)))
        x = self.final_layer_norm(res + F.dropout(x, self.dropout, self.training))
        return x, weight


class TransformerDecoder(nn.Module):
    def __init__(self, num_layers, d_model, num_heads, dropout=0.0):
        super().__init__()
        self.decoder_layers = nn.ModuleList(
            [TransformerDecoderLayer(d_model, num_heads, dropout) for _ in range(num_layers)])

    def forward(self, x, valid, memory=None, memory_valid=None, memory_weight=None, self_weight=None):
        """x: B x T x C with ``valid`` B x T bool; memory: B x S x C with ``memory_valid``.
        Returns (B x T x C, attention of the last layer's last attention block)."""
        padding = ~valid
        memory_padding = None if memory_valid is None else ~memory_valid
        x = x.transpose(0, 1)
        if memory is not None:
            memory = memory.transpose(0, 1)
        causal = future_mask(x.shape[0], x.device, x.dtype)
        weight = None
        for layer in self.decoder_layers:
            x, weight = layer(x, padding, memory, memory_padding, causal, memory_weight, self_weight)
        return x.transpose(0, 1), weight


class DualTransformer(nn.Module):
    def __init__(self, d_model, num_heads, num_decoder_layers1, num_decoder_layers2, dropout=0.0):
        super().__init__()
        self.decoder1 = TransformerDecoder(num_decoder_layers1, d_model, num_heads, dropout)
        self.decoder2 = TransformerDecoder(num_decoder_layers2, d_model, num_heads, dropout)

    def generate(self, frames, frames_valid, words, words_valid):
        """Mask generator: B x T x C frame states conditioned on the words (the release's decoding=1)."""
        words_enc, _ = self.decoder2(words, words_valid)
        out, _ = self.decoder1(frames, frames_valid, words_enc, words_valid)
        return out

    def reconstruct(self, props, props_valid, words, words_valid, weight=None):
        """Mask-conditioned reconstructor (decoding=2): B x L x C word states and the last cross-attention.

        ``weight`` (B x P, or None for the whole video) conditions the proposals' self-attention and
        the words' cross-attention to them."""
        props_enc, _ = self.decoder1(props, props_valid, self_weight=weight)
        return self.decoder2(words, words_valid, props_enc, props_valid, memory_weight=weight)
