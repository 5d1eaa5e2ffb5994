"""The run folder (OUTPUT_DIR): what a training run writes there, and the refusal to start a run in a
folder that holds another one."""
import glob
import logging
import os
import shutil

from ..utils import comm
from ..utils.errors import ConfigError

logger = logging.getLogger("mmn")

METRICS_FILE = "metrics.jsonl"
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
