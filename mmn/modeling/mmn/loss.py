"""MMN losses, vectorised over the batch (the official code loops over videos).

Sentences of all videos are flattened to S rows; ``video_index`` (S,) gives each one's video.
"""
import math

import torch
import torch.nn.functional as F

from ...structures import segment_iou


def scaled_iou_bce_loss(scores2d, iou1d, mask2d, min_iou, max_iou):
    """BCE between IoU scores (S x N x N) and clamp((iou - min) / (max - min), 0, 1) over the valid
    cells; ``iou1d``: S x P IoU targets of the valid cells in row-major order."""
    target = ((iou1d - min_iou) / (max_iou - min_iou)).clamp(0, 1)
    return F.binary_cross_entropy(scores2d[:, mask2d], target)


def _masked_logsumexp(logits, keep, dim):
    return torch.logsumexp(logits.masked_fill(~keep, float("-inf")), dim=dim)


def mutual_matching_loss(map2d, sent_feat, iou1d, moments, video_index, mask2d, *, top_k, tau_video, tau_sent,
                         margin, negative_video_iou, sent_removal_iou, eps=1e-6):
    """The official mutual-matching contrastive loss; returns (loss_vid, loss_sent), unweighted.

    map2d: B x C x N x N contrastive moment features; sent_feat: S x C; iou1d: S x P IoU targets of the
    valid cells (row-major order of mask2d);
    moments: S x 2 seconds (to drop near-duplicate sentences of the same video from the negatives).
    Computed with log-sum-exp instead of the official exp/sum/log: equal in value, no overflow at small tau.
    """
    num_sent = sent_feat.shape[0]
    channels = map2d.shape[1]
    proposals = F.normalize(map2d[:, :, mask2d], dim=1)    # B x C x P, valid cells in row-major order
    sents = F.normalize(sent_feat, dim=1)                   # S x C

    # positives: the top-k cells by IoU of each sentence, in its own video
    topk = iou1d.topk(top_k, dim=-1).indices                                    # S x k
    positive_feats = proposals.transpose(1, 2)[video_index[:, None], topk]    # S x k x C
    positive = torch.bmm(positive_feats, sents[:, :, None]).squeeze(-1) - margin  # S x k

    # video side: each positive proposal against every sentence of the batch, except sentences of
    # the same video whose moment overlaps this one by >= sent_removal_iou (the sentence itself stays)
    sim_vid = (positive_feats.reshape(-1, channels) @ sents.t()).reshape(num_sent, top_k, num_sent)
    eye = torch.eye(num_sent, dtype=torch.bool, device=sents.device)
    same_video = video_index[:, None] == video_index[None, :]
    overlapping = segment_iou(moments[:, None, :], moments[None, :, :]) >= sent_removal_iou
    keep = ~(same_video & overlapping) | eye
    logits_vid = (sim_vid - eye[:, None, :].to(sim_vid.dtype) * margin) / tau_video
    loss_vid = -(positive / tau_video - _masked_logsumexp(logits_vid, keep[:, None, :], dim=2)).mean()

    # sentence side: each sentence against its positive, the cells of its own video with IoU below
    # negative_video_iou (the others are zeroed, i.e. logit 0, and stay in the sum as officially) and
    # every valid cell of every other video
    sim_sent = torch.einsum("sc,bcp->sbp", sents, proposals)                    # S x B x P
    own = sim_sent[torch.arange(num_sent, device=sents.device), video_index]   # S x P
    own = own * (iou1d < negative_video_iou).to(own.dtype)
    sim_sent = sim_sent.index_put((torch.arange(num_sent, device=sents.device), video_index), own)
    negatives = torch.logsumexp(sim_sent.reshape(num_sent, -1) / tau_sent, dim=1)   # S
    denominator = torch.logaddexp(positive / tau_sent, negatives[:, None])
    denominator = torch.logaddexp(denominator, torch.full_like(denominator, math.log(eps)))
    loss_sent = -(positive / tau_sent - denominator).mean()
    return loss_vid, loss_sent
