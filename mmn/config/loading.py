"""Build a frozen config from a YAML file and command-line overrides."""
import os

import torch

from ..utils.errors import ConfigError
from .defaults import get_default_config


def load_config(config_file=None, opts=(), checkpoint=None):
    """Defaults, merged with the config stored in ``checkpoint`` (a path), then ``config_file``, then ``opts``
    ([KEY, VALUE, ...]); returns a frozen node whose datasets and model geometry have been checked.

    yacs already rejects unknown keys; we re-raise with the file (or "command line") named.
    """
    import yaml

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
    """Checks that need no data: the splits against the dataset catalog (DATASETS.NAME is derived from
    them), and the model's own rules (``GroundingModel.check_config``). Errors name the keys."""
    from ..data.catalog import check_dataset_splits
    from ..modeling import get_model_class

    cfg.DATASETS.NAME = check_dataset_splits(cfg)
    get_model_class(cfg).check_config(cfg)


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
