"""CNM losses: label-smoothed reconstruction cross-entropy, L_rec and the intra-video contrastive L_IVC."""
import torch


def reconstruction_nll(logits, targets, mask, eps=0.1):
    """Per-query label-smoothed NLL averaged over the query's valid positions.

    logits: B x L x V; targets: B x L word ids; mask: B x L (1 = position scored).
    Per position: (1 - eps) * (-log p[target]) + eps / V * sum_v(-log p[v]).
    Returns a B vector.
    """
    logp = logits.log_softmax(dim=-1)
    nll = -logp.gather(dim=-1, index=targets.unsqueeze(-1)).squeeze(-1)
    smooth = -logp.sum(dim=-1)
    loss = (1 - eps) * nll + eps / logp.size(-1) * smooth
    loss = loss.masked_fill(mask == 0, 0)
    return loss.sum(dim=-1) / mask.to(loss.dtype).sum(dim=-1)


def rec_loss(ce_pos, ce_hard):
    """L_rec = mean CE_p + mean CE_h (eq. 12); trains the reconstructor only."""
    return ce_pos.mean() + ce_hard.mean()


def ivc_loss(ce_pos, ce_hard, ce_easy, beta1=0.1, beta2=0.15):
    """L_IVC = mean max(CE_p - CE_h + beta1, 0) + mean max(CE_p - CE_e + beta2, 0) (eq. 13).

    Returns (total, hard part, easy part); trains the mask generator only."""
    hard = torch.clamp(ce_pos - ce_hard + beta1, min=0).mean()
    easy = torch.clamp(ce_pos - ce_easy + beta2, min=0).mean()
    return hard + easy, hard, easy
