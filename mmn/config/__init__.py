"""Configuration: yacs defaults with the official key names, plus loading helpers."""
from .defaults import get_default_config
from .loading import load_config, resolve_device

__all__ = ["get_default_config", "load_config", "resolve_device"]
