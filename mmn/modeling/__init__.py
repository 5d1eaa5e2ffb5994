"""Models. Importing this package registers every model in ``MODEL_REGISTRY``."""
from .base import GroundingModel, RankedMoments
from .registry import MODEL_REGISTRY, build_model, get_model_class, register_model
from . import mmn  # noqa: F401  (registers "MMN")
from . import cnm  # noqa: F401  (registers "CNM")
from . import tan  # noqa: F401  (registers "TAN")

__all__ = ["GroundingModel", "MODEL_REGISTRY", "RankedMoments", "build_model", "get_model_class", "register_model"]
