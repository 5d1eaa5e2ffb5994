"""MMN (AAAI 2022): importing this package declares MODEL.MMN and registers "MMN" in the model registry."""
from . import config  # noqa: F401  (declares MODEL.MMN)
from .model import MMN

__all__ = ["MMN"]
