"""Mask-conditioned multi-head attention (CNM, eq. 8 as the official code computes it).

The attention map is the ordinary softmax attention; when a mask ``m`` (one weight per key, e.g. a
Gaussian proposal over the frames) is given, every row is then multiplied by ``m + 1e-10`` and
renormalised to sum to one::

    A = softmax(q k^T / sqrt(d) + future_mask, padding -> -1e30)
    A = A * (m + 1e-10) / sum_j(A_j * (m_j + 1e-10))

The paper writes ``Softmax(A x m)`` (mask inside the softmax); the released code, which produced the
published numbers, weights the probabilities after the softmax. With ``m`` all ones the result is
the ordinary attention (up to float rounding); a key with ``m = 0`` keeps only a 1e-10 relative weight.

Parameter names (``in_proj_weight``, ``in_proj_bias``, ``out_proj``) and initialisation follow the
fairseq-style module of the release, so its checkpoints load unchanged.
"""
import torch
import torch.nn.functional as F
from torch import nn

PADDING_FILL = -1e30  # the release fills padded keys with -1e30 (not -inf): no NaN on all-padded rows
MASK_EPS = 1e-10


class MaskConditionedAttention(nn.Module):
    def __init__(self, embed_dim, num_heads):
        super().__init__()
        if embed_dim % num_heads:
            raise ValueError(f"embed_dim {embed_dim} is not divisible by num_heads {num_heads}")
        self.embed_dim = embed_dim
        self.num_heads = num_heads
        self.head_dim = embed_dim // num_heads
        self.scaling = self.head_dim ** -0.5
        self.in_proj_weight = nn.Parameter(torch.empty(3 * embed_dim, embed_dim))
        self.in_proj_bias = nn.Parameter(torch.empty(3 * embed_dim))
        self.out_proj = nn.Linear(embed_dim, embed_dim)
        self.reset_parameters()

    def reset_parameters(self):
        nn.init.xavier_uniform_(self.in_proj_weight)
        nn.init.xavier_uniform_(self.out_proj.weight)
        nn.init.constant_(self.in_proj_bias, 0.0)
        nn.init.constant_(self.out_proj.bias, 0.0)

    def forward(self, query, key, key_padding_mask=None, attn_mask=None, key_weight=None):
        """Time-first inputs, as the release.

        query: T x B x C; key (= value): S x B x C; key_padding_mask: B x S bool, True = padding;
        attn_mask: T x S additive (0 / -inf); key_weight: B x S mask-conditioning weights or None.
        Returns (T x B x C output, B x T x S attention averaged over heads).
        """
        tgt_len, bsz, dim = query.shape
        src_len = key.shape[0]
        w, b = self.in_proj_weight, self.in_proj_bias
        if query is key:
            q, k, v = F.linear(query, w, b).chunk(3, dim=-1)
        else:
            q = F.linear(query, w[:dim], b[:dim])
            k, v = F.linear(key, w[dim:], b[dim:]).chunk(2, dim=-1)
        q = q * self.scaling
        h, hd = self.num_heads, self.head_dim
        q = q.contiguous().view(tgt_len, bsz * h, hd).transpose(0, 1)
        k = k.contiguous().view(src_len, bsz * h, hd).transpose(0, 1)
        v = v.contiguous().view(src_len, bsz * h, hd).transpose(0, 1)

        scores = torch.bmm(q, k.transpose(1, 2))  # (B*H) x T x S
        if attn_mask is not None:
            scores = scores + attn_mask.unsqueeze(0)
        if key_padding_mask is not None:
            scores = scores.view(bsz, h, tgt_len, src_len).masked_fill(
                key_padding_mask[:, None, None, :], PADDING_FILL).view(bsz * h, tgt_len, src_len)
        attn = F.softmax(scores.float(), dim=-1).type_as(scores)
        if key_weight is not None:
            weight = key_weight[:, None, None, :].expand(-1, h, tgt_len, -1).reshape(bsz * h, tgt_len, src_len)
            attn = attn * (weight + MASK_EPS)
            attn = attn / attn.sum(dim=-1, keepdim=True)

        out = torch.bmm(attn, v).transpose(0, 1).contiguous().view(tgt_len, bsz, dim)
        out = self.out_proj(out)
        return out, attn.view(bsz, h, tgt_len, src_len).mean(dim=1)
