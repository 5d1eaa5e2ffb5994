"""Moment-DETR's training losses (official ``SetCriterion``, ``moment_detr/model.py:140-347``, "l1" spans).

Per decoder layer (the last one, then each auxiliary layer i with the suffix ``_i``), on the Hungarian
matching of that layer:

* ``loss_span``: mean |pred - target| over the matched (center, width) values;
* ``loss_giou``: mean (1 - gIoU) of the matched pairs;
* ``loss_label``: cross-entropy of every query, class 0 (a moment) for the matched ones, class 1 (none)
  for the rest weighted EOS_COEF, and then the plain mean over B x nq (the official code; DETR divides by
  the summed weights instead);
* ``class_error``: 100 - top-1 accuracy (%) of the matched queries (logged, not trained);

and on the last layer only ``loss_saliency``: the hinge sum(max(0, margin + s[neg] - s[pos])) over the
label columns (hard, easy), / (B x columns) x 2. The total is the sum over the dict, in its order, of
loss x weight (``train.py:63``).
"""
import torch
import torch.nn.functional as F
from torch import nn

from ...structures.spans import generalized_temporal_iou, span_cxw_to_xx
from .matcher import FOREGROUND, matched_index

BACKGROUND = 1


def saliency_hinge_loss(saliency_scores, pos_labels, neg_labels, margin):
    """The official saliency loss: scores (B, Lv), clip indices (B, P) of positives and negatives."""
    pos = saliency_scores.gather(1, pos_labels)
    neg = saliency_scores.gather(1, neg_labels)
    return torch.clamp(margin + neg - pos, min=0).sum() / (len(pos) * pos_labels.shape[1]) * 2


def weighted_total(losses, weights):
    """Sum of loss x weight over the keys of ``losses`` that have a weight, in the order of ``losses``."""
    return sum(losses[k] * weights[k] for k in losses if k in weights)


class SetCriterion(nn.Module):
    """The losses of one batch from the model's outputs; ``matcher`` is a ``HungarianMatcher``."""

    def __init__(self, matcher, weight_dict, eos_coef=0.1, saliency_margin=0.2):
        super().__init__()
        self.matcher = matcher
        self.weight_dict = dict(weight_dict)
        self.saliency_margin = saliency_margin
        empty_weight = torch.ones(2)
        empty_weight[BACKGROUND] = eos_coef
        # not in the state_dict: the official criterion is no part of the model (its checkpoints lack it)
        self.register_buffer("empty_weight", empty_weight, persistent=False)

    def match(self, outputs, span_labels, return_costs=False):
        """The matching of every layer: the last layer first, then the auxiliary layers (official order)."""
        logits = torch.stack([outputs["pred_logits"]] + [a["pred_logits"] for a in outputs.get("aux_outputs", [])])
        spans = torch.stack([outputs["pred_spans"]] + [a["pred_spans"] for a in outputs.get("aux_outputs", [])])
        return self.matcher(logits, spans, span_labels, return_costs=return_costs)

    def layer_losses(self, pred_logits, pred_spans, targets, indices, counts):
        """span, giou, label and class_error of one layer's predictions (B, nq, ...) and matching."""
        videos, queries, target_rows = (t.to(pred_spans.device) for t in matched_index(indices, counts))
        src = pred_spans[videos, queries]
        tgt = targets[target_rows]
        target_classes = torch.full(pred_logits.shape[:2], BACKGROUND, dtype=torch.int64, device=pred_logits.device)
        target_classes[videos, queries] = FOREGROUND
        loss_label = F.cross_entropy(pred_logits.transpose(1, 2), target_classes, self.empty_weight, reduction="none")
        with torch.no_grad():  # official misc.accuracy, top-1
            top1 = pred_logits[videos, queries].topk(1, 1, True, True)[1].t()
            correct = top1.eq(FOREGROUND)[:1].reshape(-1).float().sum(0) * (100.0 / max(len(videos), 1))
        return {
            "loss_span": F.l1_loss(src, tgt, reduction="none").mean(),
            "loss_giou": (1 - generalized_temporal_iou(span_cxw_to_xx(src), span_cxw_to_xx(tgt))).mean(),
            "loss_label": loss_label.mean(),
            "class_error": 100 - correct,
        }

    def forward(self, outputs, span_labels, saliency_pos_labels=None, saliency_neg_labels=None, indices=None):
        """The official loss dict (module docstring) for ``outputs`` of the model and the batch's targets:
        ``span_labels`` a list of B (n_i, 2) normalised (center, width) tensors, saliency labels (B, P) clip
        indices or None (then ``loss_saliency`` is 0). ``indices``: a matching from ``match`` to reuse."""
        if indices is None:
            indices = self.match(outputs, span_labels)
        counts = [len(s) for s in span_labels]
        targets = torch.cat([s.reshape(-1, 2) for s in span_labels]).to(outputs["pred_spans"].device)
        layers = [outputs] + list(outputs.get("aux_outputs", []))
        losses = {}
        for k, (layer, layer_indices) in enumerate(zip(layers, indices)):
            terms = self.layer_losses(layer["pred_logits"], layer["pred_spans"], targets, layer_indices, counts)
            if k == 0:
                if saliency_pos_labels is None:
                    terms["loss_saliency"] = outputs["saliency_scores"].new_zeros(())
                else:
                    terms["loss_saliency"] = saliency_hinge_loss(outputs["saliency_scores"], saliency_pos_labels,
                                                                 saliency_neg_labels, self.saliency_margin)
                losses.update(terms)
            else:
                losses.update({f"{name}_{k - 1}": value for name, value in terms.items()})
        return losses

    def total(self, losses):
        """The official training loss: the weighted sum of ``losses`` (``train.py:63``)."""
        return weighted_total(losses, self.weight_dict)
