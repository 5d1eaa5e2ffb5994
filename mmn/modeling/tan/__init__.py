"""2D-TAN (AAAI 2020, microsoft/2D-TAN): importing this package registers "TAN" in the model registry."""
from . import config  # noqa: F401  (declares MODEL.TAN)
from .model import TAN

__all__ = ["TAN"]
