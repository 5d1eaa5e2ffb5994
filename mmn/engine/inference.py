"""Evaluation owned by the engine: inference over a loader (the answers, and each split's mean loss for models
whose eval outputs carry one), the recall table, and the evaluation of a checkpoint (test_net.py)."""
import json
import logging
import os

import torch
from terminaltables import AsciiTable
from tqdm import tqdm

from ..data.catalog import dataset_entry
from ..evaluation import metric_spec, recall_table
from ..modeling import build_dataset, build_model
from ..data import make_data_loader
from ..utils import comm
from ..utils.checkpoint import atomic_write_text, load_model_weights
from ..utils.comm import unwrap_model
from ..utils.speed import apply_speed_options, autocast

logger = logging.getLogger("mmn.inference")


@torch.no_grad()
def run_inference(model, loader, device, topk=5, amp=False, keep_maps=0):
    """Top-``topk`` moments (seconds) and scores of every query of ``loader.dataset``, in dataset order.

    The model's ``rank_moments`` runs per batch (e.g. score fusion + NMS), so only Q x topk results are kept,
    and the score maps of the first ``keep_maps`` queries only (plots). Under torch.distributed each rank
    runs its share and the results are gathered on every rank. The model's training mode is restored.
    Returns (moments, scores, {query: map}, mean loss): the loss is the mean over batches of the eval
    outputs' "loss" (a validation loss, as official evaluations log it), None when the outputs carry none.
    """
    was_training = model.training
    model.eval()
    module = unwrap_model(model)
    # under DDP each rank has its own BatchNorm statistics: evaluate with rank 0's, the ones it saves
    comm.broadcast_module(module, buffers_only=True)
    dataset = loader.dataset
    results, maps, losses = {}, {}, []
    for batch in tqdm(loader, desc="eval", disable=not comm.is_main_process(), leave=False):
        with autocast(amp, device):
            out = model(batch.to(device))
        if isinstance(out, dict) and "loss" in out:
            losses.append(float(out["loss"]))
        ranked = module.rank_moments(out, batch, topk)
        for row, q in enumerate(batch.query_indices.tolist()):
            results[q] = (ranked.moments[row], ranked.scores[row])
            if q < keep_maps and ranked.score_maps is not None:
                maps[q] = ranked.score_maps[row]
    model.train(was_training)
    merged, merged_maps, merged_losses = {}, {}, []
    for part, part_maps, part_losses in comm.all_gather_objects((results, maps, losses)):
        merged.update(part)
        merged_maps.update(part_maps)
        merged_losses.extend(part_losses)
    missing = set(range(dataset.num_queries)) - set(merged)
    if missing:
        raise RuntimeError(f"inference produced no result for {len(missing)} queries, e.g. {sorted(missing)[:5]}")
    moments = torch.stack([merged[q][0] for q in range(dataset.num_queries)])
    scores = torch.stack([merged[q][1] for q in range(dataset.num_queries)])
    loss = sum(merged_losses) / len(merged_losses) if merged_losses else None
    return moments, scores, merged_maps, loss


def recall_metrics(cfg, dataset, moments, loss=None):
    """The recall table of ranked ``moments`` (Q x k x 2) against ``dataset``'s ground truth, at the
    thresholds of its catalog entry (or TEST.IOU_THRESHOLDS) and the ranks of TEST.RECALLS; with the
    split's mean ``loss`` as "loss" when given."""
    thresholds, recalls, strict = metric_spec(cfg, dataset_entry(cfg, dataset), num_moments=moments.shape[1])
    metrics = recall_table(moments, dataset.query_moments(), thresholds, recalls=recalls, strict=strict)
    if loss is not None:
        metrics["loss"] = loss
    logger.info("Evaluation on %s (%d items, %d queries)%s\n%s", dataset.ann_file, len(dataset), dataset.num_queries,
                "" if loss is None else f", loss {loss:.4f}", format_recall_table(metrics))
    return metrics


def evaluate(cfg, model, loader, device):
    """Run inference and the recall table on ``loader.dataset``: (metrics with the mean loss when the model
    has one, top moments Q x 5 x 2, scores Q x 5)."""
    moments, scores, _, loss = run_inference(model, loader, device, amp=cfg.MODEL.AMP)
    return recall_metrics(cfg, loader.dataset, moments, loss), moments, scores


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


def evaluate_checkpoint(cfg, device, ckpt, out=None, vis=0):
    """Evaluate ``ckpt`` on the config's test split (test_net.py): print the table, write the results JSON (and
    ``vis`` query plots). Returns the metrics."""
    model = build_model(cfg)
    load_model_weights(model, ckpt)
    model = apply_speed_options(model, cfg, device)
    split = cfg.DATASETS.TEST[0]
    dataset = build_dataset(cfg, split)
    loader = make_data_loader(cfg, dataset, is_train=False)
    moments, scores, maps, loss = run_inference(model, loader, device, amp=cfg.MODEL.AMP, keep_maps=vis)
    metrics = recall_metrics(cfg, dataset, moments, loss)
    if comm.is_main_process():
        print(format_recall_table(metrics))
        out = out or os.path.join(cfg.OUTPUT_DIR, f"results_{split}.json")
        atomic_write_text(json.dumps(results_json(dataset, metrics, moments, scores, ckpt, split)), out)
        logger.info("wrote %s", out)
        if vis > 0:
            from ..visualization import plot_queries

            plot_queries(dataset, moments, scores, maps, vis, os.path.join(cfg.OUTPUT_DIR, "vis"))
    return metrics


def results_json(dataset, metrics, moments, scores, ckpt, split):
    """Metrics and, per query, the top moments [start_s, end_s, score] (missing ones omitted)."""
    durations = dataset.query_durations().tolist()
    queries = []
    for q, (vid, sentence, gt) in enumerate(zip(dataset.query_video_ids(), dataset.query_sentences(),
                                                dataset.query_moments().tolist())):
        kept = torch.isfinite(scores[q])
        top = torch.cat([moments[q][kept], scores[q][kept, None].to(moments.dtype)], dim=1)
        queries.append({
            "video": vid,
            "duration": durations[q],
            "sentence": sentence,
            "gt": [round(x, 4) for x in gt],
            "top5": [[round(x, 4) for x in row] for row in top.tolist()],
        })
    return {"checkpoint": str(ckpt), "split": split, "metrics": metrics, "queries": queries}
