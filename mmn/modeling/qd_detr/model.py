"""QD-DETR: Query-Dependent Video Representation for Moment Retrieval and Highlight Detection (Moon et al.,
CVPR 2023), the official ``QDDETR`` of wjun0830/QD-DETR at 56c63b2 (``qd_detr/model.py``).

Moment-DETR's input projections, position embeddings, heads, matcher, span / label losses, optimiser and
post-processing, with QD-DETR's own parts:

- a learnt global token (``global_rep_token``, its position ``global_rep_pos``) prepended to [video; text];
- the transformer of ``transformer.py``: text-to-video cross-attention layers, self-attention over
  [global token; video], and an anchor decoder whose NUM_QUERIES learnt (center, width) anchors
  (``query_embed``, (nq, 2) before sigmoid) each decoder layer refines; spans = sigmoid(``span_embed``(hs) +
  inverse_sigmoid(the layer's anchors));
- the input-adaptive saliency: sum_d proj1(video memory)_d x proj2(global memory)_d / sqrt(HIDDEN_DIM);
- a negative pair per video: the projected texts rolled by one along the batch (video b with text b + 1
  mod B; a batch of one pairs a video with its own text) through the whole transformer again, same video
  tokens, global token and positions; its saliency (``saliency_scores_neg``) is pushed down by the loss.
  Its decoder runs too although only the memories are used, as officially (in training its dropout draws
  belong to the official random stream). Only the loss reads it: the eval forward skips the pass unless
  asked (``forward_outputs(batch, negative=True)``, what the official evaluation computes for its loss log),
  which changes no output it returns.

Parameter names are the official ones (an official checkpoint's ``"model"`` loads strictly; the unused
``txt_position_embed`` is built and saved as officially). The batch is Moment-DETR's (``MomentDETR``'s
docstring) plus ``saliency_all_labels`` (B, W) for the loss: each clip's summed annotator score, W = Lv or
Lv + 1 (see ``loss.rank_contrastive_loss``).
"""
import math

import torch
from torch import nn

from ...utils.errors import ConfigError
from ..base import GroundingModel
from ..moment_detr.config import video_input_dim, weight_dict
from ..moment_detr.matcher import HungarianMatcher
from ..moment_detr.model import MLP, MomentDETR, batch_field, input_projection
from ..moment_detr.position_encoding import PositionEmbeddingSine, TrainablePositionalEncoding
from .loss import QDSetCriterion
from .transformer import SINE_FEATURES_PER_COORD, QDDETRTransformer, inverse_sigmoid


def as_moment_detr_config(cfg):
    """``cfg`` with MODEL.MOMENT_DETR replaced by MODEL.QD_DETR (same keys), for Moment-DETR's helpers that
    read their node by name (``build_moment_detr_optimizer``, ``MomentDETR.check_config``)."""
    view = cfg.clone()
    view.defrost()
    view.MODEL.MOMENT_DETR = cfg.MODEL.QD_DETR.clone()
    return view


class QDDETR(MomentDETR):
    """The model (module docstring); built from ``cfg.MODEL.QD_DETR``. Training forward: the loss dict
    ("loss" the weighted total); eval forward: the outputs (``forward_outputs``)."""

    def __init__(self, cfg):
        GroundingModel.__init__(self, cfg)  # not MomentDETR.__init__: the network is QD-DETR's own
        type(self).check_config(cfg)
        c = cfg.MODEL.QD_DETR
        d = c.HIDDEN_DIM
        # construction order = the official one (transformer, position embeddings, heads, projections,
        # saliency projections, global token), so that a seed gives the official initial weights
        self.transformer = QDDETRTransformer(d, c.NHEADS, c.ENC_LAYERS, c.DEC_LAYERS, c.DIM_FEEDFORWARD, c.DROPOUT)
        self.position_embed = PositionEmbeddingSine(d, normalize=True)
        self.txt_position_embed = TrainablePositionalEncoding(c.MAX_Q_L, d, dropout=c.INPUT_DROPOUT)
        self.span_embed = MLP(d, d, 2, 3)
        self.class_embed = nn.Linear(d, 2)  # 0: a moment (foreground), 1: none
        self.query_embed = nn.Embedding(c.NUM_QUERIES, 2)
        self.input_txt_proj = input_projection(c.T_FEAT_DIM, d, c.N_INPUT_PROJ, c.INPUT_DROPOUT)
        self.input_vid_proj = input_projection(video_input_dim(c), d, c.N_INPUT_PROJ, c.INPUT_DROPOUT)
        self.saliency_proj1 = nn.Linear(d, d)
        self.saliency_proj2 = nn.Linear(d, d)
        self.global_rep_token = nn.Parameter(torch.randn(d))
        self.global_rep_pos = nn.Parameter(torch.randn(d))
        self.hidden_dim = d
        self.use_txt_pos = bool(c.USE_TXT_POS)
        self.aux_loss = bool(c.AUX_LOSS)
        matcher = HungarianMatcher(c.SET_COST_SPAN, c.SET_COST_GIOU, c.SET_COST_CLASS)
        self.criterion = QDSetCriterion(matcher, weight_dict(c), eos_coef=c.EOS_COEF,
                                        saliency_margin=c.SALIENCY_MARGIN)
        self.cfg = cfg

    @classmethod
    def check_config(cls, cfg):
        c = cfg.MODEL.QD_DETR
        problems = []
        try:
            MomentDETR.check_config(as_moment_detr_config(cfg))
        except ConfigError as e:
            problems.append(str(e).replace("MODEL.MOMENT_DETR", "MODEL.QD_DETR"))
        if c.HIDDEN_DIM != 2 * SINE_FEATURES_PER_COORD:
            problems.append(f"MODEL.QD_DETR.HIDDEN_DIM must be {2 * SINE_FEATURES_PER_COORD}, got {c.HIDDEN_DIM}: the "
                            f"anchor decoder's sine embedding has {SINE_FEATURES_PER_COORD} features per coordinate "
                            "whatever the width (official transformer.py:44-45)")
        if c.PRE_NORM:
            problems.append("MODEL.QD_DETR.PRE_NORM True is not supported (the official pre-norm text-to-video layer "
                            "hard-codes 75 clips)")
        if c.ENC_LAYERS < 1:
            problems.append(f"MODEL.QD_DETR.ENC_LAYERS must be >= 1, got {c.ENC_LAYERS}")
        if problems:
            raise ConfigError("; ".join(problems))

    # ------------------------------------------------------------------ network
    def saliency(self, memory, memory_global):
        """(B, Lv): sum_d saliency_proj1(memory)_d x saliency_proj2(memory_global)_d / sqrt(HIDDEN_DIM), on
        every clip, padding included."""
        return torch.sum(self.saliency_proj1(memory) * self.saliency_proj2(memory_global).unsqueeze(1),
                         dim=-1) / math.sqrt(self.hidden_dim)

    def forward_outputs(self, batch, negative=None):
        """The official ``QDDETR.forward``: {"pred_logits" (B, nq, 2), "pred_spans" (B, nq, 2) sigmoid
        (center, width), "saliency_scores" (B, Lv), "saliency_scores_neg" (B, Lv) (the rolled-text pass, which
        only the loss reads: with ``negative``, by default in training only), "video_mask" (the batch's
        src_vid_mask), "aux_outputs": per earlier decoder layer {"pred_logits", "pred_spans"} (with AUX_LOSS)}."""
        if negative is None:
            negative = self.training
        src_vid_mask, src_txt_mask = batch_field(batch, "src_vid_mask"), batch_field(batch, "src_txt_mask")
        src_vid = self.input_vid_proj(batch_field(batch, "src_vid"))
        src_txt = self.input_txt_proj(batch_field(batch, "src_txt"))
        bsz, video_length, d = src_vid.shape
        pos_vid = self.position_embed(src_vid, src_vid_mask)
        pos_txt = self.txt_position_embed(src_txt) if self.use_txt_pos else torch.zeros_like(src_txt)
        global_token = self.global_rep_token.reshape(1, 1, d).repeat(bsz, 1, 1)
        global_valid = torch.ones(bsz, 1, dtype=torch.bool, device=src_vid.device)
        pos = torch.cat([self.global_rep_pos.reshape(1, 1, d).repeat(bsz, 1, 1), pos_vid, pos_txt], dim=1)

        def run(texts, text_mask):
            src = torch.cat([global_token, src_vid, texts], dim=1)
            valid = torch.cat([global_valid, torch.cat([src_vid_mask, text_mask], dim=1).bool()], dim=1)
            return self.transformer(src, ~valid, self.query_embed.weight, pos, video_length)

        hs, reference, memory, memory_global = run(src_txt, src_txt_mask)
        logits = self.class_embed(hs)
        spans = (self.span_embed(hs) + inverse_sigmoid(reference)).sigmoid()
        out = {"pred_logits": logits[-1], "pred_spans": spans[-1],
               "saliency_scores": self.saliency(memory, memory_global)}
        if negative:
            # texts rolled by one along the batch: video b with text b + 1 (mod B)
            _, _, memory_neg, global_neg = run(torch.roll(src_txt, -1, 0), torch.roll(src_txt_mask, -1, 0))
            out["saliency_scores_neg"] = self.saliency(memory_neg, global_neg)
        out["video_mask"] = src_vid_mask
        if self.aux_loss:
            out["aux_outputs"] = [{"pred_logits": a, "pred_spans": b} for a, b in zip(logits[:-1], spans[:-1])]
        return out

    def losses(self, outputs, batch):
        """The official loss dict of ``outputs`` on the batch's targets, plus "loss", the weighted total."""
        losses = self.criterion(outputs, batch_field(batch, "span_labels"), batch_field(batch, "saliency_pos_labels"),
                                batch_field(batch, "saliency_neg_labels"), batch_field(batch, "saliency_all_labels"))
        losses["loss"] = self.criterion.total(losses)
        return losses

    # ------------------------------------------------------------------ training
    def build_optimizer(self, cfg):
        return super().build_optimizer(as_moment_detr_config(cfg))
