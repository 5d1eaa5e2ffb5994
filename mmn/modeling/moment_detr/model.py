"""Moment-DETR: Detecting Moments and Highlights in Videos via Natural Language Queries (Lei et al.,
NeurIPS 2021), the official ``MomentDETR`` of jayleicn/moment_detr (``moment_detr/model.py``).

Input projections (per stream N_INPUT_PROJ LinearLayers: LayerNorm -> Dropout(INPUT_DROPOUT) -> Linear
-> ReLU on all but the last) of the video clips (features + TEF) and the text tokens; a post-norm
transformer encoder over [video; text] with sine positions on the video tokens (zeros on the text), a
decoder of NUM_QUERIES learned queries; per decoder layer a 2-way class head (0 = a moment) and a 3-layer
MLP span head -> sigmoid (center, width) normalised by the clip count; a saliency head on the encoder's
video tokens. Parameter names are the official ones: an official checkpoint's ``"model"`` loads strictly.

The batch the model reads (a mapping or an object with these attributes; the names of the official
``prepare_batch_inputs``): ``src_vid`` (B, Lv, V_FEAT_DIM (+2 TEF)), ``src_vid_mask`` (B, Lv) 1 = valid,
``src_txt`` (B, Lq, T_FEAT_DIM), ``src_txt_mask`` (B, Lq); for the losses ``span_labels`` (a list of B
(n_i, 2) normalised (center, width) windows) and ``saliency_pos_labels`` / ``saliency_neg_labels`` (B, 2)
clip indices (absent: no saliency loss).
"""
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from ...utils.errors import ConfigError
from ..base import GroundingModel
from .config import video_input_dim, weight_dict
from .loss import SetCriterion
from .matcher import HungarianMatcher
from .optim import build_moment_detr_optimizer
from .position_encoding import PositionEmbeddingSine, TrainablePositionalEncoding
from .transformer import Transformer


def batch_field(batch, name):
    """``batch[name]`` of a mapping, else ``batch.name``; None when absent."""
    if isinstance(batch, Mapping):
        return batch.get(name)
    return getattr(batch, name, None)


class LinearLayer(nn.Module):
    """LayerNorm -> Dropout -> Linear (-> ReLU), the official input projection layer."""

    def __init__(self, in_hsz, out_hsz, layer_norm=True, dropout=0.1, relu=True):
        super().__init__()
        self.relu = relu
        self.layer_norm = layer_norm
        if layer_norm:
            self.LayerNorm = nn.LayerNorm(in_hsz)
        self.net = nn.Sequential(nn.Dropout(dropout), nn.Linear(in_hsz, out_hsz))

    def forward(self, x):
        if self.layer_norm:
            x = self.LayerNorm(x)
        x = self.net(x)
        return F.relu(x, inplace=True) if self.relu else x


class MLP(nn.Module):
    """``num_layers`` Linear layers with ReLU between them (DETR's FFN head)."""

    def __init__(self, input_dim, hidden_dim, output_dim, num_layers):
        super().__init__()
        sizes = [hidden_dim] * (num_layers - 1)
        self.layers = nn.ModuleList(nn.Linear(n, k) for n, k in zip([input_dim] + sizes, sizes + [output_dim]))

    def forward(self, x):
        for i, layer in enumerate(self.layers):
            x = layer(x) if i == len(self.layers) - 1 else F.relu(layer(x))
        return x


def input_projection(in_dim, hidden_dim, n_layers, dropout):
    """The official stack: three LinearLayers are built and the first ``n_layers`` kept (building all three
    draws the same initial weights from a seed as the official code); no ReLU after the last kept one."""
    relu = [True] * 3
    relu[n_layers - 1] = False
    layers = [LinearLayer(in_dim, hidden_dim, dropout=dropout, relu=relu[0]),
              LinearLayer(hidden_dim, hidden_dim, dropout=dropout, relu=relu[1]),
              LinearLayer(hidden_dim, hidden_dim, dropout=dropout, relu=relu[2])]
    return nn.Sequential(*layers[:n_layers])


class MomentDETR(GroundingModel):
    """The model (module docstring); built from ``cfg.MODEL.MOMENT_DETR``."""

    def __init__(self, cfg):
        super().__init__(cfg)
        type(self).check_config(cfg)
        c = cfg.MODEL.MOMENT_DETR
        d = c.HIDDEN_DIM
        # construction order = the official one (transformer, position embeddings, heads, projections), so that
        # the same seed gives the official initial weights and named_parameters() the official order
        self.transformer = Transformer(d, c.NHEADS, c.ENC_LAYERS, c.DEC_LAYERS, c.DIM_FEEDFORWARD, c.DROPOUT,
                                       c.PRE_NORM)
        self.position_embed = PositionEmbeddingSine(d, normalize=True)
        self.txt_position_embed = TrainablePositionalEncoding(c.MAX_Q_L, d, dropout=c.INPUT_DROPOUT)
        self.span_embed = MLP(d, d, 2, 3)
        self.class_embed = nn.Linear(d, 2)  # 0: a moment (foreground), 1: none
        self.query_embed = nn.Embedding(c.NUM_QUERIES, d)
        self.input_txt_proj = input_projection(c.T_FEAT_DIM, d, c.N_INPUT_PROJ, c.INPUT_DROPOUT)
        self.input_vid_proj = input_projection(video_input_dim(c), d, c.N_INPUT_PROJ, c.INPUT_DROPOUT)
        self.saliency_proj = nn.Linear(d, 1)
        self.use_txt_pos = bool(c.USE_TXT_POS)
        self.aux_loss = bool(c.AUX_LOSS)
        matcher = HungarianMatcher(c.SET_COST_SPAN, c.SET_COST_GIOU, c.SET_COST_CLASS)
        self.criterion = SetCriterion(matcher, weight_dict(c), eos_coef=c.EOS_COEF, saliency_margin=c.SALIENCY_MARGIN)
        self.cfg = cfg

    @classmethod
    def check_config(cls, cfg):
        c = cfg.MODEL.MOMENT_DETR
        problems = []
        if c.SPAN_LOSS_TYPE != "l1":
            problems.append(f"MODEL.MOMENT_DETR.SPAN_LOSS_TYPE {c.SPAN_LOSS_TYPE!r}: only 'l1' (the official default) "
                            "is implemented")
        if c.CONTRASTIVE_ALIGN_LOSS:
            problems.append("MODEL.MOMENT_DETR.CONTRASTIVE_ALIGN_LOSS True is not implemented (official default False)")
        if c.POSITION_EMBEDDING not in ("sine", "v2"):
            problems.append(f"MODEL.MOMENT_DETR.POSITION_EMBEDDING {c.POSITION_EMBEDDING!r}: the official code "
                            "supports 'sine' only")
        if c.N_INPUT_PROJ not in (1, 2, 3):
            problems.append(f"MODEL.MOMENT_DETR.N_INPUT_PROJ must be 1, 2 or 3, got {c.N_INPUT_PROJ}")
        if c.HIDDEN_DIM < 1 or c.NHEADS < 1 or c.HIDDEN_DIM % c.NHEADS:
            problems.append(f"MODEL.MOMENT_DETR.HIDDEN_DIM {c.HIDDEN_DIM} must be a positive multiple of NHEADS "
                            f"{c.NHEADS}")
        if c.DEC_LAYERS < 1 or c.ENC_LAYERS < 0 or c.NUM_QUERIES < 1:
            problems.append(f"MODEL.MOMENT_DETR needs DEC_LAYERS >= 1, ENC_LAYERS >= 0, NUM_QUERIES >= 1 (got "
                            f"{c.DEC_LAYERS}, {c.ENC_LAYERS}, {c.NUM_QUERIES})")
        if video_input_dim(c) < 1:
            problems.append(f"MODEL.MOMENT_DETR.CTX_MODE {c.CTX_MODE!r} with V_FEAT_DIM {c.V_FEAT_DIM} gives no "
                            "video input ('video', 'tef' or 'video_tef')")
        if problems:
            raise ConfigError("; ".join(problems))

    # ------------------------------------------------------------------ network
    def forward_outputs(self, batch):
        """The official ``MomentDETR.forward``: {"pred_logits" (B, nq, 2), "pred_spans" (B, nq, 2) sigmoid
        (center, width), "saliency_scores" (B, Lv), "aux_outputs": per earlier decoder layer {"pred_logits",
        "pred_spans"}} (the last only with AUX_LOSS)."""
        src_vid_mask, src_txt_mask = batch_field(batch, "src_vid_mask"), batch_field(batch, "src_txt_mask")
        src_vid = self.input_vid_proj(batch_field(batch, "src_vid"))
        src_txt = self.input_txt_proj(batch_field(batch, "src_txt"))
        src = torch.cat([src_vid, src_txt], dim=1)
        mask = torch.cat([src_vid_mask, src_txt_mask], dim=1).bool()
        pos_vid = self.position_embed(src_vid, src_vid_mask)
        pos_txt = self.txt_position_embed(src_txt) if self.use_txt_pos else torch.zeros_like(src_txt)
        pos = torch.cat([pos_vid, pos_txt], dim=1)
        hs, memory = self.transformer(src, ~mask, self.query_embed.weight, pos)
        logits = self.class_embed(hs)
        spans = self.span_embed(hs).sigmoid()
        out = {"pred_logits": logits[-1], "pred_spans": spans[-1],
               "saliency_scores": self.saliency_proj(memory[:, :src_vid.shape[1]]).squeeze(-1)}
        if self.aux_loss:
            out["aux_outputs"] = [{"pred_logits": a, "pred_spans": b} for a, b in zip(logits[:-1], spans[:-1])]
        return out

    def losses(self, outputs, batch):
        """The official loss dict of ``outputs`` on the batch's targets, plus "loss", the weighted total."""
        losses = self.criterion(outputs, batch_field(batch, "span_labels"), batch_field(batch, "saliency_pos_labels"),
                                batch_field(batch, "saliency_neg_labels"))
        losses["loss"] = self.criterion.total(losses)
        return losses

    def forward(self, batch, epoch=None):
        """Training: the loss dict (``losses``; "loss" is the total). Evaluation: the outputs
        (``forward_outputs``)."""
        outputs = self.forward_outputs(batch)
        if not self.training:
            return outputs
        return self.losses(outputs, batch)

    # ------------------------------------------------------------------ training
    def build_optimizer(self, cfg):
        return build_moment_detr_optimizer(self, cfg)
