"""Inference over a test loader and the recall table of the official evaluation."""
import logging

import torch
from terminaltables import AsciiTable
from tqdm import tqdm

from ..data.catalog import dataset_entry
from ..evaluation import metric_spec, recall_table
from ..utils import comm
from ..utils.speed import autocast

logger = logging.getLogger("mmn.inference")


@torch.no_grad()
def run_inference(model, loader, device, topk=5, amp=False, keep_maps=0):
    """Top-``topk`` moments (seconds) and scores of every query of ``loader.dataset``, in dataset order.

    The model's ``rank_moments`` runs per batch (MMN: fusion + NMS), so only Q x topk results are kept,
    and the score maps of the first ``keep_maps`` queries only (plots). Under torch.distributed each rank
    runs its share and the results are gathered on every rank. Returns (moments, scores, {query: map}).
    """
    model.eval()
    module = getattr(model, "module", model)
    # under DDP each rank has its own BatchNorm statistics: evaluate with rank 0's, the ones it saves
    comm.broadcast_module(module, buffers_only=True)
    dataset = loader.dataset
    results, maps = {}, {}
    for batch in tqdm(loader, desc="eval", disable=not comm.is_main_process(), leave=False):
        with autocast(amp, device):
            out = model(batch.to(device))
        ranked = module.rank_moments(out, batch, topk)
        for row, q in enumerate(batch.query_indices.tolist()):
            results[q] = (ranked.moments[row], ranked.scores[row])
            if q < keep_maps and ranked.score_maps is not None:
                maps[q] = ranked.score_maps[row]
    merged, merged_maps = {}, {}
    for part, part_maps in comm.all_gather_objects((results, maps)):
        merged.update(part)
        merged_maps.update(part_maps)
    missing = set(range(dataset.num_queries)) - set(merged)
    if missing:
        raise RuntimeError(f"inference produced no result for {len(missing)} queries, e.g. {sorted(missing)[:5]}")
    moments = torch.stack([merged[q][0] for q in range(dataset.num_queries)])
    scores = torch.stack([merged[q][1] for q in range(dataset.num_queries)])
    return moments, scores, merged_maps


def recall_metrics(cfg, dataset, moments):
    """The recall table of ranked ``moments`` (Q x k x 2) against ``dataset``'s ground truth, at the
    thresholds of its catalog entry (or TEST.IOU_THRESHOLDS) and the ranks of TEST.RECALLS."""
    thresholds, recalls, strict = metric_spec(cfg, dataset_entry(cfg, dataset), num_moments=moments.shape[1])
    metrics = recall_table(moments, dataset.query_moments(), thresholds, recalls=recalls, strict=strict)
    logger.info("Evaluation on %s (%d items, %d queries)\n%s", dataset.ann_file, len(dataset),
                dataset.num_queries, format_recall_table(metrics))
    return metrics


def evaluate(cfg, model, loader, device):
    """Run inference and the recall table on ``loader.dataset``: (metrics, top moments Q x 5 x 2, scores Q x 5)."""
    moments, scores, _ = run_inference(model, loader, device, amp=cfg.MODEL.AMP)
    return recall_metrics(cfg, loader.dataset, moments), moments, scores


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
