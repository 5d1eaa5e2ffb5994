"""CNM (AAAI 2022): importing this package registers "CNM" in the model registry."""
from .cnm import CNM

__all__ = ["CNM"]
