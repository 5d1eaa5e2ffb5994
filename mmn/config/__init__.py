"""Configuration: yacs defaults with the official key names, plus loading helpers."""
from ..utils.errors import ConfigError  # re-exported: where callers have always found it
from .defaults import get_default_config
from .loading import load_config, resolve_device

__all__ = ["ConfigError", "get_default_config", "load_config", "resolve_device"]
