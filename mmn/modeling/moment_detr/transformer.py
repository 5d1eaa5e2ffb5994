"""Moment-DETR's transformer (official ``moment_detr/transformer.py``: DETR's, sequence-first).

Encoder over [video; text] tokens with the position embedding added to queries and keys of every layer;
decoder with learned query positions over zero-initialised targets; every decoder layer's output goes
through the shared ``decoder.norm`` for the heads while the next layer reads it un-normed. Post-norm by
default (PRE_NORM adds the encoder's final LayerNorm ``encoder.norm``). Attention is
``nn.MultiheadAttention`` called as the official code calls it (need_weights left True: softmax, then
dropout on the attention weights), so training draws the same dropout masks from the CPU generator, in the
same order and shapes, as the official model. Module names are the official ones (checkpoints load strictly).
"""
import copy

import torch
import torch.nn.functional as F
from torch import nn


def _with_pos(tensor, pos):
    return tensor if pos is None else tensor + pos


class TransformerEncoderLayer(nn.Module):
    def __init__(self, d_model, nhead, dim_feedforward, dropout, normalize_before=False):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d_model, nhead, dropout=dropout)
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.dropout = nn.Dropout(dropout)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)
        self.normalize_before = normalize_before

    def forward(self, src, src_key_padding_mask=None, pos=None):
        """``src``, ``pos`` (L, B, d); ``src_key_padding_mask`` (B, L), True = padding."""
        if self.normalize_before:
            src2 = self.norm1(src)
            q = k = _with_pos(src2, pos)
            src = src + self.dropout1(self.self_attn(q, k, value=src2, key_padding_mask=src_key_padding_mask)[0])
            src2 = self.norm2(src)
            return src + self.dropout2(self.linear2(self.dropout(F.relu(self.linear1(src2)))))
        q = k = _with_pos(src, pos)
        src = self.norm1(src + self.dropout1(self.self_attn(q, k, value=src, key_padding_mask=src_key_padding_mask)[0]))
        return self.norm2(src + self.dropout2(self.linear2(self.dropout(F.relu(self.linear1(src))))))


class TransformerDecoderLayer(nn.Module):
    def __init__(self, d_model, nhead, dim_feedforward, dropout, normalize_before=False):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d_model, nhead, dropout=dropout)
        self.multihead_attn = nn.MultiheadAttention(d_model, nhead, dropout=dropout)
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.dropout = nn.Dropout(dropout)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.norm3 = nn.LayerNorm(d_model)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)
        self.dropout3 = nn.Dropout(dropout)
        self.normalize_before = normalize_before

    def forward(self, tgt, memory, memory_key_padding_mask=None, pos=None, query_pos=None):
        """``tgt``, ``query_pos`` (nq, B, d); ``memory``, ``pos`` (L, B, d); mask (B, L), True = padding."""
        if self.normalize_before:
            tgt2 = self.norm1(tgt)
            q = k = _with_pos(tgt2, query_pos)
            tgt = tgt + self.dropout1(self.self_attn(q, k, value=tgt2)[0])
            tgt2 = self.norm2(tgt)
            tgt2 = self.multihead_attn(query=_with_pos(tgt2, query_pos), key=_with_pos(memory, pos), value=memory,
                                       key_padding_mask=memory_key_padding_mask)[0]
            tgt = tgt + self.dropout2(tgt2)
            tgt2 = self.norm3(tgt)
            return tgt + self.dropout3(self.linear2(self.dropout(F.relu(self.linear1(tgt2)))))
        q = k = _with_pos(tgt, query_pos)
        tgt = self.norm1(tgt + self.dropout1(self.self_attn(q, k, value=tgt)[0]))
        tgt2 = self.multihead_attn(query=_with_pos(tgt, query_pos), key=_with_pos(memory, pos), value=memory,
                                   key_padding_mask=memory_key_padding_mask)[0]
        tgt = self.norm2(tgt + self.dropout2(tgt2))
        return self.norm3(tgt + self.dropout3(self.linear2(self.dropout(F.relu(self.linear1(tgt))))))


class TransformerEncoder(nn.Module):
    def __init__(self, layer, num_layers, norm=None):
        super().__init__()
        self.layers = nn.ModuleList(copy.deepcopy(layer) for _ in range(num_layers))
        self.norm = norm

    def forward(self, src, src_key_padding_mask=None, pos=None):
        for layer in self.layers:
            src = layer(src, src_key_padding_mask=src_key_padding_mask, pos=pos)
        return src if self.norm is None else self.norm(src)


class TransformerDecoder(nn.Module):
    """Returns the shared-norm output of every layer, stacked: (num_layers, nq, B, d)."""

    def __init__(self, layer, num_layers, norm):
        super().__init__()
        self.layers = nn.ModuleList(copy.deepcopy(layer) for _ in range(num_layers))
        self.norm = norm

    def forward(self, tgt, memory, memory_key_padding_mask=None, pos=None, query_pos=None):
        intermediate = []
        for layer in self.layers:
            tgt = layer(tgt, memory, memory_key_padding_mask=memory_key_padding_mask, pos=pos, query_pos=query_pos)
            intermediate.append(self.norm(tgt))
        return torch.stack(intermediate)


class Transformer(nn.Module):
    def __init__(self, d_model=256, nhead=8, num_encoder_layers=2, num_decoder_layers=2, dim_feedforward=1024,
                 dropout=0.1, normalize_before=False):
        super().__init__()
        encoder_layer = TransformerEncoderLayer(d_model, nhead, dim_feedforward, dropout, normalize_before)
        self.encoder = TransformerEncoder(encoder_layer, num_encoder_layers,
                                          nn.LayerNorm(d_model) if normalize_before else None)
        decoder_layer = TransformerDecoderLayer(d_model, nhead, dim_feedforward, dropout, normalize_before)
        self.decoder = TransformerDecoder(decoder_layer, num_decoder_layers, nn.LayerNorm(d_model))
        for p in self.parameters():  # the official initialisation
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)
        self.d_model = d_model
        self.nhead = nhead

    def forward(self, src, mask, query_embed, pos_embed):
        """``src``, ``pos_embed`` (B, L, d); ``mask`` (B, L), True = padding; ``query_embed`` (nq, d).

        Returns hs (num_decoder_layers, B, nq, d) and memory (B, L, d).
        """
        src = src.permute(1, 0, 2)
        pos_embed = pos_embed.permute(1, 0, 2)
        query_pos = query_embed.unsqueeze(1).repeat(1, src.shape[1], 1)
        memory = self.encoder(src, src_key_padding_mask=mask, pos=pos_embed)
        hs = self.decoder(torch.zeros_like(query_pos), memory, memory_key_padding_mask=mask, pos=pos_embed,
                          query_pos=query_pos)
        return hs.transpose(1, 2), memory.transpose(0, 1)
