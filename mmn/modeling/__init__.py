"""Models. Importing this package registers every model in ``MODEL_REGISTRY``."""
from .registry import MODEL_REGISTRY, build_model, register_model
from . import mmn  # noqa: F401  (registers "MMN")
from . import cnm  # noqa: F401  (registers "CNM")
from . import tan  # noqa: F401  (registers "TAN")

__all__ = ["MODEL_REGISTRY", "build_model", "register_model"]
