"""QD-DETR's saliency loss (official ``qd_detr/model.py:291-361``); every other loss is Moment-DETR's.

``loss_saliency`` = (hinge + rank_contrastive) + neg_pair, in that order of summation:

- hinge: Moment-DETR's margin loss on the sampled (hard, easy) positive / negative clips;
- neg_pair: the saliency of each video paired with another video's text (the batch's texts rolled by one)
  pushed down, -log(1 - sigmoid(s_neg)) x mask summed over the clips, averaged over the videos. Computed
  literally in fp32 as the official code does (not as softplus: it is inf for s_neg >~ 17, and NaN when
  that happens on a padded clip, inf x 0; quirk 5);
- rank_contrastive: for each threshold r = 1 .. 11 with a positive in the batch, an InfoNCE over the
  [positive-pair scores; negative-pair scores] of each video whose positives are the clips with summed
  annotator score >= r, summed over r and divided by 12 (quirk 5: 12, although r stops at 11).
"""
import torch

from ..moment_detr.loss import SetCriterion

RANK_THRESHOLDS = 11   # official range(1, 12)
RANK_DIVISOR = 12      # official `/ 12`
RANK_TAU = 0.5         # official tau
MASKED_SCORE = -1e3    # official value of a padded clip's score


def neg_pair_loss(saliency_scores_neg, video_mask):
    """mean_b sum_i -log(1 - sigmoid(s_neg[b, i])) x mask[b, i] (official ``model.py:302``)."""
    return (-torch.log(1.0 - torch.sigmoid(saliency_scores_neg)) * video_mask).sum(dim=1).mean()


def rank_contrastive_loss(saliency_scores, saliency_scores_neg, saliency_all_labels, video_mask):
    """(loss, per-threshold losses (11,), active (11,) bool) of the official rank-contrastive loss
    (``model.py:304-343``), vectorised over the thresholds; inactive thresholds (no positive in the batch)
    are skipped as the official loop skips them.

    ``saliency_all_labels`` (B, W) may be longer than the scores (B, Lv): W = Lv + 1 when a video's relevant
    clip sits one past its last feature row (quirk 3). The official code then works only when another video
    of the batch pads the scores to W, and crashes otherwise (``model.py:328``). Here the scores and the mask
    are padded to W with masked clips: the same computation as the official one when another video pads the
    batch (a positive on a padded clip counts in its video's denominator, never in the numerator; a padded
    clip's logit -1e3 / 0.5 adds exactly 0 to the softmax sum), and no crash when none does."""
    width = saliency_all_labels.shape[1]
    if width < saliency_scores.shape[1]:
        raise ValueError(f"saliency_all_labels has {width} columns for {saliency_scores.shape[1]} clips")
    pad = width - saliency_scores.shape[1]
    if pad:
        saliency_scores, saliency_scores_neg, video_mask = (
            torch.nn.functional.pad(t, (0, pad)) for t in (saliency_scores, saliency_scores_neg, video_mask))
    scores = torch.cat([saliency_scores, saliency_scores_neg], dim=1)
    labels = torch.cat([saliency_all_labels, torch.zeros_like(saliency_all_labels)], dim=1)
    mask = video_mask.repeat([1, 2])
    scores = mask * scores + (1.0 - mask) * MASKED_SCORE
    # the official "drop" mask (labels > 100) never fires on 0-12 labels: the step is the identity
    logits = scores / RANK_TAU
    logits = logits - torch.max(logits, dim=1, keepdim=True)[0]
    log_prob = logits - torch.log(torch.exp(logits).sum(1, keepdim=True) + 1e-6)
    thresholds = torch.arange(1, RANK_THRESHOLDS + 1, device=labels.device, dtype=labels.dtype)
    positive = labels.unsqueeze(0) >= thresholds[:, None, None]             # (R, B, 2W)
    n_positive = positive.sum(2)                                            # (R, B)
    mean_log_prob_pos = (positive * log_prob * mask).sum(2) / (n_positive + 1e-6)
    per_threshold = (-mean_log_prob_pos * (n_positive > 0)).mean(1)        # (R,)
    active = n_positive.sum(1) > 0
    per_threshold = torch.where(active, per_threshold, torch.zeros_like(per_threshold))
    return per_threshold.sum() / RANK_DIVISOR, per_threshold, active


def qd_saliency_parts(outputs, saliency_all_labels, hinge):
    """The parts of QD-DETR's ``loss_saliency`` given Moment-DETR's ``hinge``: {"hinge", "rank_contrastive",
    "rank_contrastive_terms" (R,), "rank_contrastive_active" (R,), "neg_pair", "loss_saliency"}."""
    video_mask = outputs["video_mask"]
    neg_pair = neg_pair_loss(outputs["saliency_scores_neg"], video_mask)
    rank, terms, active = rank_contrastive_loss(outputs["saliency_scores"], outputs["saliency_scores_neg"],
                                                saliency_all_labels, video_mask)
    return {"hinge": hinge, "rank_contrastive": rank, "rank_contrastive_terms": terms,
            "rank_contrastive_active": active, "neg_pair": neg_pair, "loss_saliency": hinge + rank + neg_pair}


class QDSetCriterion(SetCriterion):
    """Moment-DETR's criterion (matching, span / giou / label losses per layer, the hinge) with QD-DETR's
    ``loss_saliency`` = (hinge + rank_contrastive) + neg_pair in place of the hinge alone."""

    def forward(self, outputs, span_labels, saliency_pos_labels=None, saliency_neg_labels=None,
                saliency_all_labels=None, indices=None):
        losses = super().forward(outputs, span_labels, saliency_pos_labels, saliency_neg_labels, indices=indices)
        if saliency_pos_labels is not None:  # official: no saliency labels, loss_saliency 0
            if saliency_all_labels is None or "saliency_scores_neg" not in outputs:
                raise ValueError("QD-DETR's saliency loss needs saliency_all_labels and the negative pair's "
                                 "saliency_scores_neg")
            losses["loss_saliency"] = qd_saliency_parts(outputs, saliency_all_labels,
                                                        losses["loss_saliency"])["loss_saliency"]
        return losses
