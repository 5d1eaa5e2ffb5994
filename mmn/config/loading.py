"""Build a frozen config from a YAML file and command-line overrides.

The config layer knows no model and no dataset: the checks that need them (the splits against the
dataset catalog, the model's own rules) are declared by the layers that own them
(``register_config_check``, done when ``mmn.modeling`` is imported) and run on every config built here.
"""
import os

import torch

from ..utils.errors import ConfigError
from .defaults import get_default_config, registered_models

# checks of a merged config, in registration order (mmn/data/catalog.py, then mmn/modeling/registry.py)
_CHECKS = []


def register_config_check(check):
    """Run ``check(cfg)`` (it may set derived keys, e.g. DATASETS.NAME, and raises ``ConfigError`` naming the
    keys) on every config ``load_config`` builds. Returns ``check``."""
    if check not in _CHECKS:
        _CHECKS.append(check)
    return check


def load_config(config_file=None, opts=(), checkpoint=None):
    """Defaults, merged with the config stored in ``checkpoint`` (a path), then ``config_file``, then ``opts``
    ([KEY, VALUE, ...]); returns a frozen node whose datasets and model geometry have been checked.

    yacs already rejects unknown keys; we re-raise with the file (or "command line") named. The models
    must be imported (``import mmn.modeling``): they declare their config nodes and checks.
    """
    import yaml

    if not registered_models():
        raise RuntimeError("no model is registered: import mmn.modeling before loading a config")
    cfg = get_default_config()
    if config_file and not os.path.isfile(config_file):
        raise ConfigError(f"{config_file}: config file not found")
    if checkpoint:
        _merge_checkpoint_config(cfg, checkpoint, required=not config_file)
    if config_file:
        if not os.path.isfile(config_file):
            raise ConfigError(f"{config_file}: config file not found")
        try:
            cfg.merge_from_file(config_file)
        except yaml.YAMLError as err:
            raise ConfigError(f"{config_file}: malformed YAML: {err}") from None
        except (KeyError, ValueError, AssertionError) as err:
            raise ConfigError(f"{config_file}: {_describe(err)}") from err
    opts = list(opts or ())
    if len(opts) % 2:
        raise ConfigError(f"command line: overrides come as KEY VALUE pairs, got an odd count: {opts}")
    if opts:
        try:
            cfg.merge_from_list(opts)
        except (KeyError, ValueError, AssertionError) as err:
            raise ConfigError(f"command line: {_describe(err)}") from err
    check_config(cfg)
    cfg.freeze()
    return cfg


def _merge_checkpoint_config(cfg, path, required):
    """Merge the config a checkpoint of ours carries (``Checkpointer.save`` stores ``cfg.dump()``)."""
    from ..utils.checkpoint import read_checkpoint

    if not required and not os.path.isfile(path):
        return  # the config file is enough; loading the weights will say the checkpoint is missing
    text = read_checkpoint(path).get("config")
    if not text:
        if required:
            raise ConfigError(f"{path}: the checkpoint carries no config (a released official checkpoint?); "
                              "give --config-file")
        return
    try:
        stored = cfg.load_cfg(text)
        # nodes of other models that were registered in the process that saved it (plugins) are not ours
        for name in [k for k, v in stored.MODEL.items() if isinstance(v, type(stored)) and k not in cfg.MODEL
                     and k != stored.MODEL.get("ARCHITECTURE")]:
            del stored.MODEL[name]
        cfg.merge_from_other_cfg(stored)
    except (KeyError, ValueError, AssertionError) as err:
        raise ConfigError(f"{path}: its stored config does not fit this version: {_describe(err)}") from err


def check_config(cfg):
    """The registered checks, which need no data: the splits against the dataset catalog (DATASETS.NAME is
    derived from them), then the model's own rules (``GroundingModel.check_config``). Errors name the keys."""
    for check in _CHECKS:
        check(cfg)


def _describe(err):
    return err.args[0] if err.args else repr(err)


def resolve_device(cfg_or_name):
    """MODEL.DEVICE as a torch.device: "auto" means CUDA when present, else CPU.

    A device this machine does not have (cuda without CUDA, cuda:N beyond the GPU count, mps without
    MPS) or a string torch does not parse is a ConfigError naming MODEL.DEVICE, here rather than at the
    first tensor moved there.
    """
    name = cfg_or_name if isinstance(cfg_or_name, str) else cfg_or_name.MODEL.DEVICE
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError, ValueError):
        raise ConfigError(f"MODEL.DEVICE {name!r} is not a device (use cpu, cuda, cuda:N or auto)") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"MODEL.DEVICE {name!r}: CUDA is not available on this machine "
                              "(set MODEL.DEVICE cpu, or auto to use CUDA only when present)")
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise ConfigError(f"MODEL.DEVICE {name!r}: this machine has {count} CUDA device(s) "
                              f"(cuda:0 to cuda:{count - 1}); or set MODEL.DEVICE auto or cpu")
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"MODEL.DEVICE {name!r}: MPS is not available on this machine "
                          "(set MODEL.DEVICE cpu, or auto)")
    return device
