"""Entry points behind train_net.py / test_net.py, importable for tests and the demo."""
import argparse
import json
import logging
import os

import torch

from ..config import load_config, resolve_device
from ..data import build_dataset, make_data_loader
from ..modeling import build_model
from ..solver import make_lr_scheduler, make_optimizer
from ..utils import comm
from ..utils.checkpoint import Checkpointer, atomic_write_text, load_model_weights
from ..utils.logger import setup_logger
from ..utils.seed import seed_everything
from ..utils.speed import apply_speed_options, autocast
from .inference import evaluate, format_recall_table
from .trainer import do_train

logger = logging.getLogger("mmn")


def argument_parser(description, need_ckpt=False):
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--config-file", required=True, metavar="FILE", help="YAML config")
    if need_ckpt:
        parser.add_argument("--ckpt", required=True, help="checkpoint to evaluate (official or ours)")
        parser.add_argument("--out", default=None, help="results JSON (default OUTPUT_DIR/results_<split>.json)")
        parser.add_argument("--vis", type=int, default=0, metavar="N",
                            help="write score-map and timeline PNGs of the first N queries to OUTPUT_DIR/vis")
    else:
        parser.add_argument("--resume", nargs="?", const="last", default=None, metavar="PATH",
                            help="continue from OUTPUT_DIR/last_checkpoint, or from PATH")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides: KEY VALUE ...")
    return parser


def setup(config_file, opts):
    """Config, process group, logger, seed; returns (cfg, device)."""
    cfg = load_config(config_file, opts)
    device = comm.init_distributed(resolve_device(cfg))
    if comm.is_main_process():
        os.makedirs(cfg.OUTPUT_DIR, exist_ok=True)
    setup_logger(cfg.OUTPUT_DIR, comm.get_rank())
    seed_everything(cfg.SEED + comm.get_rank())
    logger.info("config %s, device %s, world size %d", config_file, device, comm.get_world_size())
    return cfg, device


def _wrap_ddp(model, device):
    if comm.get_world_size() == 1:
        return model
    # BERT is frozen for the first epochs: its parameters then get no gradient
    return torch.nn.parallel.DistributedDataParallel(
        model, device_ids=[device.index] if device.type == "cuda" else None,
        broadcast_buffers=False, find_unused_parameters=True)


def _eval_loader(cfg, splits):
    """Loader over the first split of ``splits`` (DATASETS.TEST or DATASETS.VAL); None when empty."""
    return make_data_loader(cfg, build_dataset(cfg, splits[0]), is_train=False) if splits else None


def train(cfg, device, resume=None):
    """Build everything and train; returns the best {score, epoch}. ``resume``: None, "last" or a path."""
    model = build_model(cfg)
    if cfg.MODEL.WEIGHT:
        load_model_weights(model, cfg.MODEL.WEIGHT)
    model = apply_speed_options(model, cfg, device)
    if hasattr(model, "build_optimizers"):  # models that own their update (CNM's alternating steps)
        if comm.get_world_size() > 1:
            raise NotImplementedError(f"{cfg.MODEL.ARCHITECTURE} trains in a single process only")
        optimizer, scheduler = model.build_optimizers(cfg), None
    else:
        optimizer = make_optimizer(cfg, model)
        scheduler = make_lr_scheduler(cfg, optimizer)
    start_epoch, best = 1, None
    if resume is None and cfg.SOLVER.RESUME:
        resume = "last"
    if resume is not None:
        checkpointer = Checkpointer(cfg.OUTPUT_DIR, cfg)
        path = checkpointer.last_checkpoint() if resume == "last" else resume
        if path is None:
            raise FileNotFoundError(f"{cfg.OUTPUT_DIR}/last_checkpoint: nothing to resume from")
        start_epoch, best = checkpointer.resume(path, model, optimizer, scheduler)
    train_set = build_dataset(cfg, cfg.DATASETS.TRAIN[0], is_train=True)
    train_loader = make_data_loader(cfg, train_set, is_train=True)
    test_loader, val_loader = _eval_loader(cfg, cfg.DATASETS.TEST), _eval_loader(cfg, cfg.DATASETS.VAL)
    model = _wrap_ddp(model, device)
    return do_train(cfg, model, train_loader, test_loader, optimizer, scheduler, device, start_epoch, best,
                    val_loader=val_loader)


def test(cfg, device, ckpt, out=None, vis=0):
    """Evaluate ``ckpt`` on the config's test split; print the table, write the results JSON (and ``vis``
    query plots). Returns metrics."""
    model = build_model(cfg)
    load_model_weights(model, ckpt)
    model = apply_speed_options(model, cfg, device)
    split = cfg.DATASETS.TEST[0]
    dataset = build_dataset(cfg, split)
    loader = make_data_loader(cfg, dataset, is_train=False)
    metrics, moments, scores = evaluate(cfg, model, loader, device)
    if comm.is_main_process():
        print(format_recall_table(metrics))
        out = out or os.path.join(cfg.OUTPUT_DIR, f"results_{split}.json")
        atomic_write_text(json.dumps(results_json(dataset, metrics, moments, scores, ckpt, split)), out)
        logger.info("wrote %s", out)
        if vis > 0 and cfg.MODEL.ARCHITECTURE != "MMN":
            logger.warning("--vis draws moment score maps, which only MMN has; skipped")
        elif vis > 0:
            visualize_queries(cfg, model, dataset, vis, os.path.join(cfg.OUTPUT_DIR, "vis"), device)
    return metrics


@torch.no_grad()
def visualize_queries(cfg, model, dataset, count, out_dir, device):
    """Score map and timeline PNGs of the first ``count`` queries of ``dataset``; returns the paths."""
    from ..data import BatchCollator
    from ..evaluation import fused_top_moments
    from ..visualization import plot_score_map, plot_timeline

    count = min(count, dataset.num_queries)
    videos = sorted(set(dataset.query_video_index()[:count].tolist()))
    batch = BatchCollator(dataset.pad_token_id)([dataset[i] for i in videos]).to(device)
    model.eval()
    with autocast(cfg.MODEL.AMP, device):
        out = model(batch)
    durations = batch.sentence_durations.cpu()
    fused, top, scores = fused_top_moments(out["contrastive"], out["iou"], durations, cfg.TEST.NMS_THRESH,
                                           cfg.TEST.CONTRASTIVE_SCORE_POW, k=5)
    paths = []
    for q in range(count):  # the first videos hold the first queries, so batch row q is query q
        kept = torch.isfinite(scores[q])
        moments = torch.cat([top[q][kept], scores[q][kept, None].double()], dim=1).tolist()
        gt, duration, title = dataset.moments[q].tolist(), float(durations[q]), dataset.sentences[q]
        stem = os.path.join(out_dir, f"query_{q:05d}")
        plot_score_map(fused[q], duration, stem + "_map.png", gt=gt, top=moments, title=title)
        plot_timeline(duration, stem + "_timeline.png", gt=gt, top=moments, title=title)
        paths += [stem + "_map.png", stem + "_timeline.png"]
    logger.info("wrote %d plots to %s", len(paths), out_dir)
    return paths


def results_json(dataset, metrics, moments, scores, ckpt, split):
    """Metrics and, per query, the top moments [start_s, end_s, score] (missing ones omitted)."""
    durations = dataset.query_durations().tolist()
    queries = []
    for q, (vid, sentence) in enumerate(zip(dataset.query_video_ids(), dataset.sentences)):
        kept = torch.isfinite(scores[q])
        top = torch.cat([moments[q][kept], scores[q][kept, None].to(moments.dtype)], dim=1)
        queries.append({
            "video": vid,
            "duration": durations[q],
            "sentence": sentence,
            "gt": [round(x, 4) for x in dataset.moments[q].tolist()],
            "top5": [[round(x, 4) for x in row] for row in top.tolist()],
        })
    return {"checkpoint": str(ckpt), "split": split, "metrics": metrics, "queries": queries}
