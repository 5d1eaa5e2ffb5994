"""Models: the contract (``base``), the registry, one folder per model. Importing this package declares every
model's config node and registers it in ``MODEL_REGISTRY``."""
from .base import GroundingModel, RankedMoments
from .registry import MODEL_REGISTRY, build_dataset, build_model, get_model_class, register_model
from . import mmn  # noqa: F401  (registers "MMN")
from . import cnm  # noqa: F401  (registers "CNM")
from . import tan  # noqa: F401  (registers "TAN")

__all__ = ["GroundingModel", "MODEL_REGISTRY", "RankedMoments", "build_dataset", "build_model", "get_model_class",
           "register_model"]
