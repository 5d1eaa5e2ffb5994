"""Entry points behind train_net.py / test_net.py, importable for tests and the demo."""
import argparse
import glob
import json
import logging
import os
import re
import shutil

import torch

from ..config import load_config, resolve_device
from ..utils.errors import ConfigError
from ..data import make_data_loader
from ..data.loader import num_shards
from ..modeling import build_dataset, build_model
from ..modeling.global_batch_norm import convert_to_global_batch_norm
from ..utils import comm
from ..utils.checkpoint import Checkpointer, atomic_write_text, load_model_weights
from ..utils.logger import setup_logger
from ..utils.seed import seed_everything
from ..utils.speed import apply_speed_options
from .inference import format_recall_table, recall_metrics, run_inference
from .trainer import METRICS_FILE, do_train, read_metrics, truncate_metrics

logger = logging.getLogger("mmn")

# a config override key (SOLVER.MAX_EPOCH): never the PATH of --resume
_CONFIG_KEY = re.compile(r"^[A-Z][A-Z0-9_]*(\.[A-Z0-9_]+)+$")


def argument_parser(description, need_ckpt=False):
    """train_net.py / test_net.py options; parse with ``parse_args`` (``--resume`` may stand anywhere)."""
    parser = argparse.ArgumentParser(description=description)
    if need_ckpt:
        parser.add_argument("--config-file", default=None, metavar="FILE",
                            help="YAML config (default: the config stored in the checkpoint)")
        parser.add_argument("--ckpt", required=True, help="checkpoint to evaluate (official or ours)")
        parser.add_argument("--out", default=None, help="results JSON (default OUTPUT_DIR/results_<split>.json)")
        parser.add_argument("--vis", type=int, default=0, metavar="N",
                            help="write score-map and timeline PNGs of the first N queries to OUTPUT_DIR/vis")
    else:
        parser.add_argument("--config-file", required=True, metavar="FILE", help="YAML config")
        parser.add_argument("--overwrite", action="store_true",
                            help="replace the previous run in OUTPUT_DIR (its checkpoints, metrics and plots)")
    parser.add_argument("opts", nargs="*", help="config overrides: KEY VALUE ...")
    return parser


def parse_args(parser, argv=None):
    """``parser.parse_intermixed_args`` with ``--resume [PATH]`` / ``--resume=PATH`` taken out first,
    wherever they stand: the token after ``--resume`` is its PATH unless it is an option or a config key."""
    import sys

    argv = list(sys.argv[1:] if argv is None else argv)
    resume, rest, i = None, [], 0
    while i < len(argv):
        token = argv[i]
        if token == "--resume":
            following = argv[i + 1] if i + 1 < len(argv) else None
            if following is not None and not following.startswith("-") and not _CONFIG_KEY.match(following):
                resume, i = following, i + 2
            else:
                resume, i = "last", i + 1
            continue
        if token.startswith("--resume="):
            resume = token.split("=", 1)[1] or "last"
        else:
            rest.append(token)
        i += 1
    args = parser.parse_intermixed_args(rest)
    args.resume = resume
    return args


def setup(config_file, opts, checkpoint=None):
    """Config (``checkpoint``'s stored config beneath ``config_file`` and ``opts``), process group, logger,
    seed; returns (cfg, device)."""
    cfg = load_config(config_file, opts, checkpoint=checkpoint)
    device = comm.init_distributed(resolve_device(cfg))
    if comm.is_main_process():
        os.makedirs(cfg.OUTPUT_DIR, exist_ok=True)
    setup_logger(cfg.OUTPUT_DIR, comm.get_rank())
    seed_everything(cfg.SEED + comm.get_rank())
    logger.info("config %s, device %s, world size %d", config_file or checkpoint, device, comm.get_world_size())
    return cfg, device


# what a training run writes into OUTPUT_DIR (log.txt is appended to by every command and is kept)
RUN_FILES = (METRICS_FILE, "last_checkpoint", "model_*e.pth", "best_*.pth", "training_curves.png", "tensorboard",
             ".tmp-*")


def previous_run_files(output_dir):
    """The files of an earlier training run in ``output_dir``."""
    return sorted({p for pattern in RUN_FILES for p in glob.glob(os.path.join(output_dir, pattern))})


def check_output_dir(output_dir, resume=None, overwrite=False, resumable=True):
    """Refuse to start a run in a folder that holds another one, unless resuming it or ``overwrite``
    (then its files are removed first, by rank 0). Nothing is changed when refusing. ``resumable``:
    whether the command offers --resume (the demo does not)."""
    if resume is not None:
        return
    found = previous_run_files(output_dir)
    if not found:
        return
    if not overwrite:
        names = ", ".join(os.path.basename(p) for p in found[:4]) + (" ..." if len(found) > 4 else "")
        ways = "continue it with --resume, or " if resumable else ""
        raise ConfigError(f"OUTPUT_DIR {output_dir} holds a previous run ({names}); {ways}start this one in a new "
                          f"OUTPUT_DIR, or pass --overwrite to replace it")
    if comm.is_main_process():
        for path in found:
            shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)
        logger.info("--overwrite: removed the previous run's %d files from %s", len(found), output_dir)
    comm.synchronize()


def _wrap_ddp(model, device):
    """The model's distributed wrapper under torchrun (the contract's ``wrap_distributed``), else the model."""
    return model.wrap_distributed(device) if comm.get_world_size() > 1 else model


def _eval_loader(cfg, splits):
    """Loader over the first split of ``splits`` (DATASETS.TEST or DATASETS.VAL); None when empty."""
    return make_data_loader(cfg, build_dataset(cfg, splits[0]), is_train=False) if splits else None


def train(cfg, device, resume=None, overwrite=False):
    """Build everything and train; returns the best {score, epoch}. ``resume``: None, "last" or a path.

    A new run refuses an OUTPUT_DIR that holds another run (``overwrite`` replaces it). Every dataset is
    built, and so checked, before the first training step.
    """
    if resume is None and cfg.SOLVER.RESUME:
        resume = "last"
    check_output_dir(cfg.OUTPUT_DIR, resume, overwrite)
    seed_everything(cfg.SEED + comm.get_rank())  # the initial weights depend on SEED alone (a resume restores the RNG)
    model = build_model(cfg)
    world = comm.get_world_size()
    if world > 1 and not model.supports_distributed:
        raise ConfigError(f"MODEL.ARCHITECTURE {cfg.MODEL.ARCHITECTURE!r} trains in one process only: "
                          "run train_net.py without torchrun")
    if num_shards(cfg) > world and cfg.MODEL.SYNC_BN:
        raise ConfigError(f"MODEL.SYNC_BN normalises over the whole batch, which SOLVER.NUM_SHARDS "
                          f"{cfg.SOLVER.NUM_SHARDS} would split in each of the {world} processes: set "
                          f"SOLVER.NUM_SHARDS 0 (one shard per process)")
    if cfg.MODEL.SYNC_BN:
        convert_to_global_batch_norm(model)
    if cfg.MODEL.WEIGHT:
        load_model_weights(model, cfg.MODEL.WEIGHT)
    model = apply_speed_options(model, cfg, device)
    optimizer, scheduler = model.build_optimizer(cfg)
    start_epoch, best, pending = 1, None, None
    if resume is not None:
        checkpointer = Checkpointer(cfg.OUTPUT_DIR, cfg)
        path = checkpointer.last_checkpoint() if resume == "last" else resume
        if path is None:
            raise ConfigError(f"{cfg.OUTPUT_DIR}/last_checkpoint: nothing to resume from")
        start_epoch, best, record = checkpointer.resume(path, model, optimizer, scheduler)
        finished = any(r["epoch"] == start_epoch - 1 for r in read_metrics(cfg.OUTPUT_DIR))
        comm.synchronize()
        if comm.is_main_process():
            truncate_metrics(cfg.OUTPUT_DIR, start_epoch - 1)  # epochs after the checkpoint are redone
        if record is not None and not finished:
            pending = record  # stopped between the epoch's checkpoint and its evaluation
    train_set = build_dataset(cfg, cfg.DATASETS.TRAIN[0], is_train=True)
    train_loader = make_data_loader(cfg, train_set, is_train=True)
    test_loader, val_loader = _eval_loader(cfg, cfg.DATASETS.TEST), _eval_loader(cfg, cfg.DATASETS.VAL)
    model = _wrap_ddp(model, device)
    return do_train(cfg, model, train_loader, test_loader, optimizer, scheduler, device, start_epoch, best,
                    val_loader=val_loader, pending=pending)


def test(cfg, device, ckpt, out=None, vis=0):
    """Evaluate ``ckpt`` on the config's test split; print the table, write the results JSON (and ``vis``
    query plots). Returns metrics."""
    model = build_model(cfg)
    load_model_weights(model, ckpt)
    model = apply_speed_options(model, cfg, device)
    split = cfg.DATASETS.TEST[0]
    dataset = build_dataset(cfg, split)
    loader = make_data_loader(cfg, dataset, is_train=False)
    moments, scores, maps = run_inference(model, loader, device, amp=cfg.MODEL.AMP, keep_maps=vis)
    metrics = recall_metrics(cfg, dataset, moments)
    if comm.is_main_process():
        print(format_recall_table(metrics))
        out = out or os.path.join(cfg.OUTPUT_DIR, f"results_{split}.json")
        atomic_write_text(json.dumps(results_json(dataset, metrics, moments, scores, ckpt, split)), out)
        logger.info("wrote %s", out)
        if vis > 0:
            visualize_queries(dataset, moments, scores, maps, vis, os.path.join(cfg.OUTPUT_DIR, "vis"))
    return metrics


def visualize_queries(dataset, moments, scores, score_maps, count, out_dir):
    """A timeline PNG of the first ``count`` queries of ``dataset`` (ground truth vs ranked moments) and,
    for models that score a moment map, the map; returns the paths."""
    from ..visualization import plot_score_map, plot_timeline

    count = min(count, dataset.num_queries)
    durations, gts, sentences = dataset.query_durations(), dataset.query_moments(), dataset.query_sentences()
    paths = []
    for q in range(count):
        kept = torch.isfinite(scores[q])
        top = torch.cat([moments[q][kept].double(), scores[q][kept, None].double()], dim=1).tolist()
        gt, duration, title = gts[q].tolist(), float(durations[q]), sentences[q]
        stem = os.path.join(out_dir, f"query_{q:05d}")
        if q in score_maps:
            plot_score_map(score_maps[q], duration, stem + "_map.png", gt=gt, top=top, title=title)
            paths.append(stem + "_map.png")
        plot_timeline(duration, stem + "_timeline.png", gt=gt, top=top, title=title)
        paths.append(stem + "_timeline.png")
    logger.info("wrote %d plots to %s", len(paths), out_dir)
    return paths


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
