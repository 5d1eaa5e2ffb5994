"""Inference over a test loader and the recall table of the official evaluation."""
import logging

import torch
from terminaltables import AsciiTable
from tqdm import tqdm

from ..evaluation import fused_top_moments, metric_spec, recall_table
from ..utils import comm
from ..utils.speed import autocast

logger = logging.getLogger("mmn.inference")


def _batch_top_moments(out, batch, nms_thresh, contrastive_pow, topk):
    """Per-query (moments Q x k x 2 seconds, scores Q x k) from a model's eval output.

    Score-map models (MMN) give "contrastive"/"iou" maps: fused, then NMS. Direct-moment models (CNM)
    give normalised "moments" Q x k x 2 and "scores"."""
    if "moments" in out:
        durations = batch.durations.cpu().double()
        moments = out["moments"].double().cpu() * durations[:, None, None]
        return moments, out["scores"].float().cpu()
    _, moments, scores = fused_top_moments(out["contrastive"], out["iou"], batch.sentence_durations.cpu(), nms_thresh,
                                           contrastive_pow, k=topk)
    return moments, scores


@torch.no_grad()
def run_inference(model, loader, device, nms_thresh, contrastive_pow, topk=5, amp=False):
    """Top-``topk`` moments (seconds) and scores of every query of ``loader.dataset``, in dataset order.

    Fusion and NMS run per batch, so only Q x topk results are kept (never the Q x N x N maps).
    Under torch.distributed each rank runs its share and the results are gathered on every rank.
    """
    model.eval()
    dataset = loader.dataset
    results = {}
    for batch in tqdm(loader, desc="eval", disable=not comm.is_main_process(), leave=False):
        with autocast(amp, device):
            out = model(batch.to(device))
        moments, scores = _batch_top_moments(out, batch, nms_thresh, contrastive_pow, topk)
        for q, m, s in zip(batch.query_indices.tolist(), moments, scores):
            results[q] = (m, s)
    merged = {}
    for part in comm.all_gather_objects(results):
        merged.update(part)
    missing = set(range(dataset.num_queries)) - set(merged)
    if missing:
        raise RuntimeError(f"inference produced no result for {len(missing)} queries, e.g. {sorted(missing)[:5]}")
    moments = torch.stack([merged[q][0] for q in range(dataset.num_queries)])
    scores = torch.stack([merged[q][1] for q in range(dataset.num_queries)])
    return moments, scores


def evaluate(cfg, model, loader, device):
    """Run inference and the recall table on ``loader.dataset``: (metrics, top moments Q x 5 x 2, scores Q x 5)."""
    dataset = loader.dataset
    moments, scores = run_inference(model, loader, device, cfg.TEST.NMS_THRESH, cfg.TEST.CONTRASTIVE_SCORE_POW,
                                    amp=cfg.MODEL.AMP)
    thresholds, recalls = metric_spec(cfg)
    metrics = recall_table(moments, dataset.moments, thresholds, recalls=recalls)
    logger.info("Evaluation on %s (%d videos, %d queries)\n%s", dataset.ann_file, len(dataset),
                dataset.num_queries, format_recall_table(metrics))
    return metrics, moments, scores


def recall_sum(metrics):
    """Model-selection criterion for best_<dataset>.pth: the sum of every R@n,IoU@m of the table."""
    return sum(v for k, v in metrics.items() if k.startswith("R@"))


def format_recall_table(metrics):
    """terminaltables rendering of R@n,IoU@m (in %) and mIoU."""
    keys = [k for k in metrics if k.startswith("R@")] + ["mIoU"]
    table = AsciiTable([keys, [f"{metrics[k] * 100:.2f}" for k in keys]])
    for i in range(len(keys)):
        table.justify_columns[i] = "center"
    return table.table
