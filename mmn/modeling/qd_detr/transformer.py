"""QD-DETR's transformer (official ``qd_detr/transformer.py`` and ``qd_detr/attention.py`` at 56c63b2).

Sequence-first, as the official code, so that training draws the same dropout masks (shapes and order) from
the CPU generator. Input: [global token; video; text] of length 1 + Lv + Lq.

1. ``t2v_encoder``: ENC_LAYERS text-to-video cross-attention layers: video queries, text keys / values, the
   global token and the text passed through; PReLU feed-forward whose residual adds to the un-normalised
   input (quirk 2), and the attention mask repeated per head in the official order (quirk 1).
2. The text is dropped; ``encoder``: ENC_LAYERS DETR post-norm self-attention layers (PReLU) over
   [global token; video]. memory[0] is the global memory, memory[1:] the video memory.
3. ``decoder``: DAB-DETR style, learnt (center, width) anchors, the 256-d sine embedding of the anchors
   (128 features per coordinate whatever the width: the official code only runs at HIDDEN_DIM 256), anchor
   refinement by the shared ``bbox_embed`` after each layer (detached for the next layer, not for the loss).

Module names are the official ones (the official checkpoint loads strictly).
"""
import copy
import math

import torch
import torch.nn.functional as F
from torch import nn

from ..moment_detr.model import MLP
from ..moment_detr.transformer import TransformerEncoder

# the sine embedding of an anchor coordinate has this many features, whatever the model width
# (official gen_sineembed_for_position, transformer.py:44-45)
SINE_FEATURES_PER_COORD = 128


def inverse_sigmoid(x, eps=1e-3):
    """log(x / (1 - x)) with x clamped to [0, 1] and both terms to >= eps (official ``model.py:16-20``)."""
    x = x.clamp(min=0, max=1)
    return torch.log(x.clamp(min=eps) / (1 - x).clamp(min=eps))


def anchor_sine_embedding(anchors):
    """(nq, B, 2) (center, width) in [0, 1] -> (nq, B, 256): per coordinate 128 features
    [sin(2 pi x / t_0), cos(2 pi x / t_1), sin(2 pi x / t_2), ...], t_i = 10000 ^ (2 (i // 2) / 128), center
    first (official ``gen_sineembed_for_position``)."""
    dim_t = torch.arange(SINE_FEATURES_PER_COORD, dtype=torch.float32, device=anchors.device)
    dim_t = 10000 ** (2 * (dim_t // 2) / SINE_FEATURES_PER_COORD)
    halves = []
    for coord in (0, 1):
        angles = (anchors[:, :, coord] * (2 * math.pi))[:, :, None] / dim_t
        halves.append(torch.stack((angles[:, :, 0::2].sin(), angles[:, :, 1::2].cos()), dim=3).flatten(2))
    return torch.cat(halves, dim=2)


def t2v_attention_mask(video_padding, text_padding, nhead):
    """The text-to-video attention mask as the official code builds it (``transformer.py:423-424``).

    Per video b: (clip i is padding) AND (token k is padding), (B, Lv, Lq); then ``.repeat(nhead, 1, 1)``,
    while ``nn.MultiheadAttention`` reads a 3-D mask at index b x nhead + h: video b, head h gets the mask
    of video (b x nhead + h) mod B (quirk 1: it mixes the videos of the batch; mirrored, not fixed). It never
    masks a whole row (the key padding mask does the real masking)."""
    return (video_padding.unsqueeze(2) & text_padding.unsqueeze(1)).repeat(nhead, 1, 1)


class T2VEncoderLayer(nn.Module):
    """Text-to-video cross-attention layer (official ``T2V_TransformerEncoderLayer``, post-norm path)."""

    def __init__(self, d_model, nhead, dim_feedforward, dropout):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d_model, nhead, dropout=dropout)
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.dropout = nn.Dropout(dropout)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)
        self.activation = nn.PReLU()
        self.nhead = nhead

    def forward(self, src, src_key_padding_mask, pos, video_length):
        """``src``, ``pos`` (1 + Lv + Lq, B, d); mask (B, 1 + Lv + Lq), True = padding. Returns ``src`` with
        the video rows updated (global token and text unchanged)."""
        lv = video_length
        with_pos = src + pos
        text_padding = src_key_padding_mask[:, lv + 1:]
        attn_mask = t2v_attention_mask(src_key_padding_mask[:, 1:lv + 1], text_padding, self.nhead)
        attn = self.self_attn(with_pos[1:lv + 1], with_pos[lv + 1:], value=src[lv + 1:], attn_mask=attn_mask,
                              key_padding_mask=text_padding)[0]
        video = src[1:lv + 1] + self.dropout1(attn)  # residual on the video without its position
        ffn = self.linear2(self.dropout(self.activation(self.linear1(self.norm1(video)))))
        # quirk 2: the FFN reads norm1(x) but its residual adds to the un-normalised x
        video = self.norm2(video + self.dropout2(ffn))
        return torch.cat([src[:1], video, src[lv + 1:]])


class EncoderLayer(nn.Module):
    """DETR post-norm self-attention layer with a PReLU feed-forward (official ``TransformerEncoderLayer``
    built with activation "prelu"). Moment-DETR's layer with its ReLU replaced by the layer's own PReLU."""

    def __init__(self, d_model, nhead, dim_feedforward, dropout):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d_model, nhead, dropout=dropout)
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.dropout = nn.Dropout(dropout)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)
        self.activation = nn.PReLU()

    def forward(self, src, src_key_padding_mask=None, pos=None):
        q = k = src + pos
        src = self.norm1(src + self.dropout1(self.self_attn(q, k, value=src, key_padding_mask=src_key_padding_mask)[0]))
        return self.norm2(src + self.dropout2(self.linear2(self.dropout(self.activation(self.linear1(src))))))


class DecoderAttention(nn.Module):
    """Multi-head attention without input projections (official ``qd_detr/attention.py``, from DAB-DETR):
    queries and keys of width ``embed_dim`` (2d in the cross-attention: content and sine halves per head),
    values of width ``vdim``; scaled by (embed_dim / H)^-0.5, explicit row-max subtraction before the
    softmax, dropout on the weights, ``out_proj`` (vdim -> vdim)."""

    def __init__(self, embed_dim, num_heads, dropout=0.0, vdim=None):
        super().__init__()
        self.embed_dim = embed_dim
        self.vdim = vdim if vdim is not None else embed_dim
        self.num_heads = num_heads
        self.dropout = dropout
        if embed_dim % num_heads or self.vdim % num_heads:
            raise ValueError(f"embed_dim {embed_dim} and vdim {self.vdim} must be divisible by num_heads {num_heads}")
        self.out_proj = nn.Linear(self.vdim, self.vdim)
        nn.init.constant_(self.out_proj.bias, 0.0)

    def forward(self, query, key, value, key_padding_mask=None):
        """``query`` (L, B, E), ``key`` (S, B, E), ``value`` (S, B, vdim); mask (B, S), True = padding."""
        tgt_len, bsz, _ = query.shape
        heads = self.num_heads
        head_dim, v_head_dim = self.embed_dim // heads, self.vdim // heads
        q = (query * float(head_dim) ** -0.5).contiguous().view(tgt_len, bsz * heads, head_dim).transpose(0, 1)
        k = key.contiguous().view(-1, bsz * heads, head_dim).transpose(0, 1)
        v = value.contiguous().view(-1, bsz * heads, v_head_dim).transpose(0, 1)
        weights = torch.bmm(q, k.transpose(1, 2))
        src_len = k.shape[1]
        if key_padding_mask is not None:
            weights = weights.view(bsz, heads, tgt_len, src_len).masked_fill(
                key_padding_mask[:, None, None, :], float("-inf")).view(bsz * heads, tgt_len, src_len)
        weights = F.softmax(weights - weights.max(dim=-1, keepdim=True)[0], dim=-1)
        weights = F.dropout(weights, p=self.dropout, training=self.training)
        out = torch.bmm(weights, v).transpose(0, 1).contiguous().view(tgt_len, bsz, self.vdim)
        return self.out_proj(out)


class DecoderLayer(nn.Module):
    """Conditional / DAB-DETR decoder layer (official ``TransformerDecoderLayer``, post-norm, PReLU).

    Self-attention on content + anchor position projections; cross-attention whose per-head query is
    [content_h; sine_h] and key [memory content_h; memory position_h], the layer-0 query / key also adding
    the positional projections (``ca_qpos_proj`` exists in layer 0 only)."""

    def __init__(self, d_model, nhead, dim_feedforward, dropout):
        super().__init__()
        self.sa_qcontent_proj = nn.Linear(d_model, d_model)
        self.sa_qpos_proj = nn.Linear(d_model, d_model)
        self.sa_kcontent_proj = nn.Linear(d_model, d_model)
        self.sa_kpos_proj = nn.Linear(d_model, d_model)
        self.sa_v_proj = nn.Linear(d_model, d_model)
        self.self_attn = DecoderAttention(d_model, nhead, dropout=dropout, vdim=d_model)
        self.norm1 = nn.LayerNorm(d_model)
        self.dropout1 = nn.Dropout(dropout)

        self.ca_qcontent_proj = nn.Linear(d_model, d_model)
        self.ca_qpos_proj = nn.Linear(d_model, d_model)
        self.ca_kcontent_proj = nn.Linear(d_model, d_model)
        self.ca_kpos_proj = nn.Linear(d_model, d_model)
        self.ca_v_proj = nn.Linear(d_model, d_model)
        self.ca_qpos_sine_proj = nn.Linear(d_model, d_model)
        self.cross_attn = DecoderAttention(d_model * 2, nhead, dropout=dropout, vdim=d_model)
        self.nhead = nhead

        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.dropout = nn.Dropout(dropout)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.norm3 = nn.LayerNorm(d_model)
        self.dropout2 = nn.Dropout(dropout)
        self.dropout3 = nn.Dropout(dropout)
        self.activation = nn.PReLU()

    def forward(self, tgt, memory, memory_key_padding_mask, pos, query_pos, query_sine_embed, is_first):
        """``tgt``, ``query_pos``, ``query_sine_embed`` (nq, B, d); ``memory``, ``pos`` (Lv, B, d)."""
        q = self.sa_qcontent_proj(tgt) + self.sa_qpos_proj(query_pos)
        k = self.sa_kcontent_proj(tgt) + self.sa_kpos_proj(query_pos)
        tgt = self.norm1(tgt + self.dropout1(self.self_attn(q, k, value=self.sa_v_proj(tgt))))

        nq, bsz, d = tgt.shape
        hw = memory.shape[0]
        q = self.ca_qcontent_proj(tgt)
        k = self.ca_kcontent_proj(memory)
        v = self.ca_v_proj(memory)
        k_pos = self.ca_kpos_proj(pos)
        if is_first:  # later layers have no ca_qpos_proj (official keep_query_pos False)
            q = q + self.ca_qpos_proj(query_pos)
            k = k + k_pos
        heads, head = self.nhead, d // self.nhead
        sine = self.ca_qpos_sine_proj(query_sine_embed).view(nq, bsz, heads, head)
        q = torch.cat([q.view(nq, bsz, heads, head), sine], dim=3).view(nq, bsz, d * 2)
        k = torch.cat([k.view(hw, bsz, heads, head), k_pos.view(hw, bsz, heads, head)], dim=3).view(hw, bsz, d * 2)
        tgt2 = self.cross_attn(q, k, value=v, key_padding_mask=memory_key_padding_mask)
        tgt = self.norm2(tgt + self.dropout2(tgt2))
        tgt2 = self.linear2(self.dropout(self.activation(self.linear1(tgt))))
        return self.norm3(tgt + self.dropout3(tgt2))


class AnchorDecoder(nn.Module):
    """The official ``TransformerDecoder`` with QD-DETR's settings (return_intermediate, query_dim 2,
    query_scale_type "cond_elewise", modulate_t_attn, one ``bbox_embed`` shared by all layers,
    keep_query_pos False).

    Returns hs (D, nq, B, d): every layer's output through the shared ``norm``, and references (D, nq, B, 2):
    [sigmoid(anchors), the refined boxes of layers 0 .. D-2] (layer l's prediction refines the box that
    entered layer l). The refinement of the last layer is computed (its ``bbox_embed`` runs) and unused."""

    def __init__(self, layer, num_layers, norm, d_model):
        super().__init__()
        self.layers = nn.ModuleList(copy.deepcopy(layer) for _ in range(num_layers))
        self.num_layers = num_layers
        self.norm = norm
        self.query_scale = MLP(d_model, d_model, d_model, 2)
        self.ref_point_head = MLP(d_model, d_model, d_model, 2)
        self.bbox_embed = MLP(d_model, d_model, 2, 3)
        nn.init.constant_(self.bbox_embed.layers[-1].weight.data, 0)
        nn.init.constant_(self.bbox_embed.layers[-1].bias.data, 0)
        self.ref_anchor_head = MLP(d_model, d_model, 1, 2)
        for layer_id in range(1, num_layers):
            self.layers[layer_id].ca_qpos_proj = None

    def forward(self, tgt, memory, memory_key_padding_mask, pos, refpoints_unsigmoid):
        output = tgt
        intermediate = []
        reference = refpoints_unsigmoid.sigmoid()
        references = [reference]
        for layer_id, layer in enumerate(self.layers):
            query_sine_embed = anchor_sine_embedding(reference)
            query_pos = self.ref_point_head(query_sine_embed)
            if layer_id > 0:  # layer 0: no transformation of the sine embedding
                query_sine_embed = query_sine_embed * self.query_scale(output)
            # width-modulated attention: the whole embedding scaled by sigmoid(ref_anchor_head) / width
            modulation = self.ref_anchor_head(output).sigmoid()
            query_sine_embed = query_sine_embed * (modulation[..., 0] / reference[..., 1]).unsqueeze(-1)
            output = layer(output, memory, memory_key_padding_mask, pos, query_pos, query_sine_embed,
                           is_first=layer_id == 0)
            # bbox_embed predicts both coordinates (official tmp[..., :query_dim] is all of it)
            new_reference = (self.bbox_embed(output) + inverse_sigmoid(reference)).sigmoid()
            if layer_id != self.num_layers - 1:
                references.append(new_reference)
            reference = new_reference.detach()
            intermediate.append(self.norm(output))
        return torch.stack(intermediate), torch.stack(references)


class QDDETRTransformer(nn.Module):
    """The official QD-DETR ``Transformer`` (post-norm, PReLU, return_intermediate_dec)."""

    def __init__(self, d_model=256, nhead=8, num_encoder_layers=2, num_decoder_layers=2, dim_feedforward=1024,
                 dropout=0.1):
        super().__init__()
        if d_model != 2 * SINE_FEATURES_PER_COORD:
            raise ValueError(f"QD-DETR's anchor decoder needs d_model {2 * SINE_FEATURES_PER_COORD} (its anchor sine "
                             f"embedding has {SINE_FEATURES_PER_COORD} features per coordinate), got {d_model}")
        # construction order as the official __init__, so that a seed gives the official initial weights
        t2v_layer = T2VEncoderLayer(d_model, nhead, dim_feedforward, dropout)
        self.t2v_encoder = TransformerEncoder(t2v_layer, num_encoder_layers)
        encoder_layer = EncoderLayer(d_model, nhead, dim_feedforward, dropout)
        self.encoder = TransformerEncoder(encoder_layer, num_encoder_layers)
        decoder_layer = DecoderLayer(d_model, nhead, dim_feedforward, dropout)
        self.decoder = AnchorDecoder(decoder_layer, num_decoder_layers, nn.LayerNorm(d_model), d_model)
        for p in self.parameters():  # the official initialisation (bbox_embed's zeroed last layer included)
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)
        self.d_model = d_model
        self.nhead = nhead

    def forward(self, src, mask, query_embed, pos_embed, video_length):
        """``src``, ``pos_embed`` (B, 1 + Lv + Lq, d) = [global token; video; text]; ``mask`` (B, 1 + Lv + Lq),
        True = padding; ``query_embed`` (nq, 2) anchors before sigmoid.

        Returns hs (D, B, nq, d), references (D, B, nq, 2), memory (B, Lv, d) (video only) and
        memory_global (B, d)."""
        bsz = src.shape[0]
        src = src.permute(1, 0, 2)
        pos_embed = pos_embed.permute(1, 0, 2)
        for layer in self.t2v_encoder.layers:
            src = layer(src, mask, pos_embed, video_length)
        src, mask, pos_embed = src[:video_length + 1], mask[:, :video_length + 1], pos_embed[:video_length + 1]
        memory = self.encoder(src, src_key_padding_mask=mask, pos=pos_embed)
        memory_global, memory_local = memory[0], memory[1:]
        refpoints = query_embed.unsqueeze(1).repeat(1, bsz, 1)
        tgt = torch.zeros(refpoints.shape[0], bsz, self.d_model, dtype=memory.dtype, device=memory.device)
        hs, references = self.decoder(tgt, memory_local, mask[:, 1:], pos_embed[1:], refpoints)
        return hs.transpose(1, 2), references.transpose(1, 2), memory_local.transpose(0, 1), memory_global
