"""Checkpoints: official-format loading (``{"model": state_dict}``, optional ``module.`` prefix) and
atomic saving of full training state."""
import logging
import os
import tempfile

import torch

logger = logging.getLogger(__name__)


class CheckpointError(RuntimeError):
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
    model = getattr(model, "module", model)
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


def atomic_write(path, mode, write):
    """Call ``write(file)`` on a temporary file in the same folder, fsync, then rename over ``path``.

    A crash at any point leaves either the previous file or the complete new one.
    """
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-" + os.path.basename(path) + "-", dir=folder)
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


class Checkpointer:
    """Saves and restores the full training state in OUTPUT_DIR.

    Files: ``model_{epoch}e.pth`` / ``best_<dataset>.pth`` holding model (official keys, no
    ``module.``), optimizer, scheduler, epoch, best, RNG states and the config; ``last_checkpoint``
    names the newest epoch file. Every write is atomic (temporary file + rename).
    """

    def __init__(self, output_dir, cfg=None):
        self.output_dir = output_dir
        self.cfg = cfg

    def save(self, name, model, optimizer=None, scheduler=None, epoch=None, best=None, last=False, record=None):
        from .seed import get_rng_state

        module = getattr(model, "module", model)
        data = {
            "model": module.state_dict(),
            "optimizer": optimizer.state_dict() if optimizer is not None else None,
            "scheduler": scheduler.state_dict() if scheduler is not None else None,
            "epoch": epoch,
            "best": best,
            "rng": get_rng_state(),
            "config": self.cfg.dump() if self.cfg is not None else None,
            "record": record,  # the epoch's training record, to finish its metrics line after a resume
        }
        path = os.path.join(self.output_dir, name)
        atomic_save(data, path)
        if last:
            atomic_write_text(name + "\n", os.path.join(self.output_dir, "last_checkpoint"))
        logger.info("saved %s", path)
        return path

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
        """Restore everything saved by ``save``; returns (next epoch, best, the epoch's training record)."""
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
        set_rng_state(data["rng"])
        logger.info("resumed from %s (epoch %d)", path, data["epoch"])
        return data["epoch"] + 1, data.get("best"), data.get("record")
