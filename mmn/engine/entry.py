"""What the command-line entry points share (train_net.py, test_net.py, the demo): their options, and the
setup of a process (config, process group, run folder, logger, seed)."""
import argparse
import logging
import os
import re
import sys

from ..config import load_config, resolve_device
from ..utils import comm
from ..utils.logger import setup_logger
from ..utils.seed import seed_everything

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
