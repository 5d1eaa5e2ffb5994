"""Moment-DETR's inference post-processing (official ``moment_detr/inference.py`` ``compute_mr_results`` and
``postprocessing_moment_detr.py`` ``PostProcessorDETR``), batched in torch.

Official steps, per query: score = softmax(logits)[foreground]; window = (start, end) of the (center,
width) span x the video's duration (float32); rows sorted by the unrounded score (descending, stable);
every value rounded to 4 decimals (``float(f"{x:.4f}")``); then windows back to float32, clamped to
[0, 150] s (150 hard-coded, whatever the duration), rounded to multiples of 2 s (``torch.round``: half
to even on the 4-decimal value), and the score rounded to 4 decimals again. No NMS. Saliency: the
per-clip scores as float16, cut to the valid clips.

The 4-decimal rounding is exact here: an fp32 value times 1e4 is exact in float64 (24 + 14 bits), so
``round(x * 1e4) / 1e4`` in float64 (round half to even on exact ties) is the correctly rounded decimal
that Python's formatting produces, and the division gives the double that ``float()`` parses from it.

``clip_to_duration`` (MODEL.MOMENT_DETR.POSTPROCESS.CLIP_TO_DURATION) clamps to [0, the video's duration]
instead of [0, max_ts_val], and clamps again after the rounding, so that no window leaves a video shorter
or longer than the 150 s of QVHighlights (other datasets, own videos).
"""
from dataclasses import dataclass

import torch

from ...structures.spans import span_cxw_to_xx
from .matcher import FOREGROUND


@dataclass
class RankedSpans:
    """A batch's predictions in seconds, each query's best first (the official submission's numbers)."""

    moments: torch.Tensor           # Q x k x 2 seconds (float64 of the official float32 values)
    scores: torch.Tensor            # Q x k foreground probabilities, 4 decimals (float64, the official values)
    saliency: torch.Tensor          # Q x Lv per-clip saliency, float16 values (as float32); NaN past the video
    saliency_lengths: torch.Tensor  # Q int64: the valid clips of each query's video


def round_decimals(x, decimals=4):
    """``float(f"{v:.{decimals}f}")`` of every float32 (or float16) value of ``x``, as float64."""
    scale = 10.0 ** decimals
    return torch.round(x.double() * scale) / scale


def ranked_windows(pred_logits, pred_spans, durations):
    """``compute_mr_results``: (windows Q x nq x 2 s, scores Q x nq) sorted by the unrounded score, both
    rounded to 4 decimals (float64): the official submission before post-processing."""
    scores = pred_logits.float().softmax(-1)[..., FOREGROUND]
    durations = torch.as_tensor(durations, dtype=torch.float32, device=pred_spans.device)
    windows = span_cxw_to_xx(pred_spans.float()) * durations[:, None, None]
    order = torch.sort(scores, dim=1, descending=True, stable=True).indices
    windows = windows.gather(1, order[..., None].expand(-1, -1, 2))
    return round_decimals(windows), round_decimals(scores.gather(1, order))


def postprocess_windows(windows, durations=None, max_ts_val=150.0, round_multiple=2.0, clip_to_duration=False):
    """``PostProcessorDETR`` ("clip_ts", "round_multiple") on 4-decimal windows (Q x k x 2, float64):
    float32, clamp to [0, max_ts_val] (or [0, duration]), round to multiples of ``round_multiple``
    (0: no rounding). Returns float64 (exact: the float32 results)."""
    w = windows.float()
    if clip_to_duration:
        upper = torch.as_tensor(durations, dtype=torch.float32, device=w.device)[:, None, None]
        w = torch.minimum(w.clamp(min=0), upper)
    else:
        w = torch.clamp(w, min=0, max=max_ts_val)
    if round_multiple:
        w = torch.round(w / round_multiple) * round_multiple
        if clip_to_duration:
            w = torch.minimum(w, upper)
    return w.double()


def rank_moments(outputs, durations, src_vid_mask, topk=None, max_ts_val=150.0, round_multiple=2.0,
                 clip_to_duration=False):
    """The official predictions of a batch: ``outputs`` of the model (pred_logits, pred_spans,
    saliency_scores), ``durations`` (Q,) seconds, ``src_vid_mask`` (Q, Lv) -> ``RankedSpans`` with the
    first ``topk`` (default all NUM_QUERIES) windows of each query."""
    windows, scores = ranked_windows(outputs["pred_logits"], outputs["pred_spans"], durations)
    moments = postprocess_windows(windows, durations, max_ts_val, round_multiple, clip_to_duration)
    scores = round_decimals(scores.float())  # the post-processor rounds its float32 copy again
    lengths = src_vid_mask.sum(1).long()
    saliency = outputs["saliency_scores"].half().float()
    saliency = saliency.masked_fill(torch.arange(saliency.shape[1], device=saliency.device) >= lengths[:, None],
                                    float("nan"))
    k = moments.shape[1] if topk is None else topk
    return RankedSpans(moments[:, :k], scores[:, :k], saliency, lengths)


def submission_rows(ranked, metas):
    """The official submission lines (``qid``, ``query``, ``vid``, ``pred_relevant_windows`` [[st, ed, score]],
    ``pred_saliency_scores``) of ``ranked`` and per query ``metas`` ({"qid", "query", "vid"})."""
    rows = []
    windows = torch.cat([ranked.moments, ranked.scores[..., None]], dim=-1).cpu().tolist()
    saliency = ranked.saliency.cpu().tolist()
    for meta, w, s, n in zip(metas, windows, saliency, ranked.saliency_lengths.cpu().tolist()):
        rows.append({"qid": meta["qid"], "query": meta["query"], "vid": meta["vid"], "pred_relevant_windows": w,
                     "pred_saliency_scores": s[:n]})
    return rows
