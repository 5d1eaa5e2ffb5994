"""CNM (AAAI 2022): importing this package registers "CNM" in the model registry."""
from . import config  # noqa: F401  (declares MODEL.CNM)
from .model import CNM

__all__ = ["CNM"]
