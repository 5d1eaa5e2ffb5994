"""Moment-DETR's Hungarian matcher (official ``moment_detr/matcher.py``, span_loss_type "l1").

Cost of prediction q for target window t: SET_COST_SPAN x L1((c, w)_q, (c, w)_t) - SET_COST_GIOU x
gIoU(q, t) - SET_COST_CLASS x softmax(logits_q)[foreground]; per video the assignment of least total cost
(``scipy.optimize.linear_sum_assignment``), as (query indices ascending, target indices).

The costs of every decoder layer and video are computed at once on padded targets (the official code
builds the full (B x nq, all targets) matrix and reads its diagonal blocks: the same values, fewer of
them) and cross to the CPU once; only the assignment itself runs per video and layer, since scipy solves
one matrix at a time.
"""
import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from ...structures.spans import generalized_temporal_iou, span_cxw_to_xx

FOREGROUND = 0  # class 0 = a moment ("foreground"), class 1 = no moment


def pad_spans(span_labels, device=None):
    """A list of B (n_i, 2) (center, width) tensors -> (B, max n_i, 2), padded with the valid span (0.5, 0.5),
    and the counts n_i as a list of ints."""
    counts = [len(s) for s in span_labels]
    padded = torch.nn.utils.rnn.pad_sequence([s.reshape(-1, 2) for s in span_labels], batch_first=True,
                                             padding_value=0.5)
    return (padded if device is None else padded.to(device)), counts


class HungarianMatcher:
    """Matches the predictions of one or several decoder layers to each video's target windows."""

    def __init__(self, cost_span=10.0, cost_giou=1.0, cost_class=4.0):
        if cost_span == 0 and cost_giou == 0 and cost_class == 0:
            raise ValueError("all matching costs are 0")
        self.cost_span = cost_span
        self.cost_giou = cost_giou
        self.cost_class = cost_class

    @torch.no_grad()
    def costs(self, pred_logits, pred_spans, targets):
        """Cost matrices (..., B, nq, M) for predictions (..., B, nq, 2) and padded targets (B, M, 2)."""
        prob = pred_logits.softmax(-1)[..., FOREGROUND]
        cost_span = (pred_spans[..., :, None, :] - targets[..., None, :, :]).abs().sum(-1)
        giou = generalized_temporal_iou(span_cxw_to_xx(pred_spans)[..., :, None, :],
                                        span_cxw_to_xx(targets)[..., None, :, :])
        return self.cost_span * cost_span + self.cost_giou * -giou + self.cost_class * -prob[..., None]

    @torch.no_grad()
    def __call__(self, pred_logits, pred_spans, span_labels, return_costs=False):
        """Match predictions (L, B, nq, ...) of L layers (or (B, nq, ...) of one) to ``span_labels`` (a list of
        B (n_i, 2) tensors). Returns per layer a list of B pairs (query indices, target indices) (int64
        tensors on the CPU); one layer's list alone when the inputs had no layer dimension. With
        ``return_costs`` also the per-video (nq, n_i) cost blocks that were solved, in the same nesting."""
        single = pred_logits.dim() == 3
        if single:
            pred_logits, pred_spans = pred_logits[None], pred_spans[None]
        targets, counts = pad_spans(span_labels, pred_spans.device)
        cost = self.costs(pred_logits, pred_spans, targets).cpu().numpy()
        indices, blocks = [], []
        for layer_cost in cost:
            layer_indices, layer_blocks = [], []
            for video_cost, n in zip(layer_cost, counts):
                block = video_cost[:, :n]
                rows, cols = linear_sum_assignment(block)
                layer_indices.append((torch.as_tensor(rows, dtype=torch.int64),
                                      torch.as_tensor(cols, dtype=torch.int64)))
                layer_blocks.append(block)
            indices.append(layer_indices)
            blocks.append(layer_blocks)
        if single:
            indices, blocks = indices[0], blocks[0]
        return (indices, blocks) if return_costs else indices


def matched_index(indices, counts):
    """Flat gather indices of matched pairs, ordered by video then query as the official code concatenates
    them: (video indices, query indices, indices into the concatenated targets)."""
    offsets = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    batch = np.concatenate([np.full(len(rows), b, dtype=np.int64) for b, (rows, _) in enumerate(indices)])
    queries = np.concatenate([rows.numpy() for rows, _ in indices])
    targets = np.concatenate([cols.numpy() + offsets[b] for b, (_, cols) in enumerate(indices)])
    return torch.from_numpy(batch), torch.from_numpy(queries), torch.from_numpy(targets)
