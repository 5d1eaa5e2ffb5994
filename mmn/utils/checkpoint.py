"""Checkpoints: official-format loading (``{"model": state_dict}``, optional ``module.`` prefix) and
atomic saving of full training state."""
import logging
import os
import re
import tempfile
import time

import torch

from .comm import unwrap_model
from .errors import ConfigError, MMNError

logger = logging.getLogger(__name__)


class CheckpointError(MMNError, RuntimeError):
    """A checkpoint that cannot be read or does not fit the model; names the file and the keys."""


def strip_module_prefix(state_dict):
    """Keys saved from DistributedDataParallel carry ``module.``; the model's own keys do not."""
    return {(k[len("module."):] if k.startswith("module.") else k): v for k, v in state_dict.items()}


def read_checkpoint(path):
    """Load a checkpoint file onto the CPU; a missing, truncated or foreign file raises CheckpointError."""
    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        data = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # torch raises many types for corrupt files
        raise CheckpointError(f"{path}: not a readable checkpoint ({err.__class__.__name__}: {err})") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: expected a dict checkpoint, got {type(data).__name__}")
    return data


def model_state_from(data, path="checkpoint"):
    state = data.get("model", data) if isinstance(data, dict) else None
    if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
        raise CheckpointError(f"{path}: no model state_dict (expected {{'model': state_dict}})")
    return strip_module_prefix(state)


def load_model_weights(model, path_or_data, path=None):
    """Load model weights with strict key matching; a mismatch lists the missing and unexpected keys."""
    if isinstance(path_or_data, (str, os.PathLike)):
        path = str(path_or_data)
        data = read_checkpoint(path)
    else:
        data = path_or_data
    path = path or "checkpoint"
    state = model_state_from(data, path)
    model = unwrap_model(model)
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        raise CheckpointError(f"{path}: checkpoint keys do not match the model "
                              f"(check the config): missing {_few(missing)}; unexpected {_few(unexpected)}")
    wrong_shape = [f"{k} {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
                   for k in own if state[k].shape != own[k].shape]
    if wrong_shape:
        raise CheckpointError(f"{path}: tensor shapes do not match the model (check the config): {_few(wrong_shape)}")
    model.load_state_dict(state, strict=True)
    return data


def _few(keys, limit=10):
    if not keys:
        return "none"
    more = f" ... and {len(keys) - limit} more" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


TEMPORARY_PREFIX = ".tmp-"
EPOCH_CHECKPOINT = re.compile(r"model_(\d+)e\.pth")


def temporary_prefix(path):
    """Name prefix of ``atomic_write``'s temporary files for ``path``: ``.tmp-<name>-`` (+ a random suffix)."""
    return TEMPORARY_PREFIX + os.path.basename(path) + "-"


def atomic_write(path, mode, write):
    """Call ``write(file)`` on a temporary file in the same folder, fsync, then rename over ``path``.

    A crash at any point leaves either the previous file or the complete new one. A path that exists
    but is no regular file (a device such as /dev/null, a folder) is refused: renaming over it would
    replace it.
    """
    if os.path.exists(path) and not os.path.isfile(path):
        raise CheckpointError(f"{path}: exists and is not a regular file; give a file path to write")
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=temporary_prefix(path), dir=folder)
    try:
        with os.fdopen(fd, mode) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def atomic_save(obj, path):
    """``torch.save(obj, path)`` atomically (temporary file + fsync + rename)."""
    atomic_write(path, "wb", lambda f: torch.save(obj, f))


def atomic_write_text(text, path):
    """Write a small text file atomically (same temporary file + rename scheme)."""
    atomic_write(path, "w", lambda f: f.write(text))


def _own_rng_state(saved, path):
    """This rank's RNG state from a checkpoint: one state (single process) or a list of every rank's."""
    from . import comm

    if isinstance(saved, dict):
        states = [saved]
    else:
        states = list(saved)
    world, rank = comm.get_world_size(), comm.get_rank()
    if len(states) != world:
        logger.warning("%s holds the RNG states of %d process(es), this run has %d: the resumed run will not "
                       "repeat the straight one exactly", path, len(states), world)
    return states[rank % len(states)]


class Checkpointer:
    """Saves and restores the full training state in OUTPUT_DIR.

    Files: ``model_{epoch}e.pth`` / ``best_<dataset>.pth`` holding model (official keys, no
    ``module.``), optimizer, scheduler, epoch, best, RNG states and the config; ``last_checkpoint``
    names the newest epoch file. Every write is atomic (temporary file + rename); each save also
    removes the temporary files that hard-killed writes left (``_remove_stale_temporaries``) and, with
    ``keep_last`` (SOLVER.KEEP_LAST) > 0, the epoch checkpoints beyond the newest ``keep_last``.
    """

    def __init__(self, output_dir, cfg=None, keep_last=None):
        self.output_dir = output_dir
        self.cfg = cfg
        if keep_last is None:
            keep_last = cfg.SOLVER.get("KEEP_LAST", 0) if cfg is not None else 0
        if isinstance(keep_last, bool) or not isinstance(keep_last, int) or keep_last < 0:
            raise ConfigError(f"SOLVER.KEEP_LAST must be an integer >= 0 (0 keeps every epoch checkpoint), "
                              f"got {keep_last!r}")
        self.keep_last = keep_last
        # temporary files not modified since this moment belong to writers of an earlier run
        self.created = time.time()

    def save(self, name, model, optimizer=None, scheduler=None, epoch=None, best=None, last=False, record=None,
             rng=None, end_epoch_done=True):
        """Write ``name`` atomically. ``end_epoch_done`` False: the schedule is saved before the epoch's
        ``end_epoch`` (the epoch checkpoint, written before the evaluation that ``end_epoch`` may read);
        ``resume`` reports it so that the resumed run replays it."""
        from .seed import get_rng_state

        module = unwrap_model(model)
        data = {
            "model": module.state_dict(),
            "optimizer": optimizer.state_dict() if optimizer is not None else None,
            "scheduler": scheduler.state_dict() if scheduler is not None else None,
            "epoch": epoch,
            "best": best,
            "rng": rng if rng is not None else get_rng_state(),  # under torchrun: every rank's, in rank order
            "config": self.cfg.dump() if self.cfg is not None else None,
            "record": record,  # the epoch's training record, to finish its metrics line after a resume
            "end_epoch_done": end_epoch_done,
        }
        path = os.path.join(self.output_dir, name)
        self._remove_stale_temporaries([name] + (["last_checkpoint"] if last else []))
        atomic_save(data, path)
        if last:
            atomic_write_text(name + "\n", os.path.join(self.output_dir, "last_checkpoint"))
        logger.info("saved %s", path)
        if last:
            self._prune_epoch_checkpoints(name)
        return path

    def _remove_stale_temporaries(self, names):
        """Remove the ``.tmp-*`` files of ``atomic_write`` in OUTPUT_DIR whose writer is surely dead.

        A hard kill (SIGKILL, power loss) in the middle of a write leaves its temporary file, up to a
        checkpoint in size. Two rules, each safe for a live writer:

        * ``.tmp-<name>-*`` of a name about to be written here: OUTPUT_DIR's checkpoints are written by
          this Checkpointer only (rank 0 of the run that owns the folder), one save at a time, so
          another temporary of the same name cannot belong to a write in progress;
        * any other ``.tmp-*`` not modified since this Checkpointer was created (the run's start): a
          write fills its file from creation to rename in seconds, so a temporary that has not changed
          since before this run began is a leftover of a killed earlier run (e.g. of a
          ``best_<dataset>.pth`` this run may never save again). A live writer, such as a test_net.py
          writing its results JSON into the folder now, has a file modified after that moment.
        """
        own = tuple(temporary_prefix(name) for name in names)
        try:
            entries = list(os.scandir(self.output_dir))
        except FileNotFoundError:
            return
        for entry in entries:
            if not entry.name.startswith(TEMPORARY_PREFIX) or not entry.is_file(follow_symlinks=False):
                continue
            try:
                stale = entry.name.startswith(own) or entry.stat(follow_symlinks=False).st_mtime < self.created
                if stale:
                    os.remove(entry.path)
                    logger.info("removed %s, the temporary file of an interrupted write", entry.path)
            except FileNotFoundError:
                pass  # its writer finished (renamed it) or another cleanup removed it meanwhile
            except OSError as err:
                logger.warning("could not remove the stale temporary file %s: %s", entry.path, err)

    def _prune_epoch_checkpoints(self, saved_name):
        """With keep_last > 0, after ``saved_name`` (model_{epoch}e.pth) became last_checkpoint, remove
        the older epoch checkpoints beyond the newest keep_last (the saved one included).

        Never removes ``best_*`` (another name), the file ``last_checkpoint`` names, nor epoch files
        numbered above the saved one (left by an earlier, longer run in this folder: they are
        overwritten, then pruned, as training reaches them).
        """
        match = EPOCH_CHECKPOINT.fullmatch(saved_name)
        if not self.keep_last or match is None:
            return
        saved_epoch = int(match.group(1))
        older = []
        for entry in os.listdir(self.output_dir):
            found = EPOCH_CHECKPOINT.fullmatch(entry)
            if found and int(found.group(1)) < saved_epoch:
                older.append((int(found.group(1)), entry))
        older.sort()
        protected = self._named_by_last_checkpoint()
        for _, entry in older[:max(0, len(older) - (self.keep_last - 1))]:
            path = os.path.join(self.output_dir, entry)
            if os.path.abspath(path) == protected:
                continue
            try:
                os.remove(path)
                logger.info("removed %s (SOLVER.KEEP_LAST %d)", path, self.keep_last)
            except OSError as err:  # a checkpoint that cannot be removed must not stop the training
                logger.warning("could not remove %s (SOLVER.KEEP_LAST): %s", path, err)

    def _named_by_last_checkpoint(self):
        marker = os.path.join(self.output_dir, "last_checkpoint")
        try:
            with open(marker) as f:
                name = f.read().strip()
        except OSError:
            return None
        return os.path.abspath(name if os.path.isabs(name) else os.path.join(self.output_dir, name))

    def last_checkpoint(self):
        """Path named by ``last_checkpoint``, or None when there is none."""
        marker = os.path.join(self.output_dir, "last_checkpoint")
        if not os.path.isfile(marker):
            return None
        with open(marker) as f:
            name = f.read().strip()
        path = name if os.path.isabs(name) else os.path.join(self.output_dir, name)
        if not os.path.isfile(path):
            raise CheckpointError(f"{marker}: names {path}, which does not exist")
        return path

    def resume(self, path, model, optimizer, scheduler):
        """Restore everything saved by ``save``; returns (next epoch, best, the epoch's training record, whether
        the epoch's ``end_epoch`` had run before the save: True for checkpoints of earlier versions)."""
        from .seed import set_rng_state

        data = read_checkpoint(path)
        for key in ("optimizer", "epoch", "rng") + (("scheduler",) if scheduler is not None else ()):
            if data.get(key) is None:
                raise CheckpointError(f"{path}: has no {key!r} state to resume from (is it a released model-only "
                                      "checkpoint? use it with test_net.py or MODEL.WEIGHT instead)")
        load_model_weights(model, data, path)
        optimizer.load_state_dict(data["optimizer"])
        if scheduler is not None:
            scheduler.load_state_dict(data["scheduler"])
        set_rng_state(_own_rng_state(data["rng"], path))
        logger.info("resumed from %s (epoch %d)", path, data["epoch"])
        return data["epoch"] + 1, data.get("best"), data.get("record"), data.get("end_epoch_done", True)
