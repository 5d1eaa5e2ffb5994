"""Model registry: ``@register_model("NAME")`` on a ``GroundingModel`` subclass built as ``cls(cfg)``."""
from ..utils.errors import ConfigError

MODEL_REGISTRY = {}


def register_model(name):
    def wrap(cls):
        if name in MODEL_REGISTRY:
            raise KeyError(f"model {name!r} registered twice")
        MODEL_REGISTRY[name] = cls
        return cls
    return wrap


def get_model_class(cfg):
    """The registered class of MODEL.ARCHITECTURE (a ``GroundingModel``)."""
    name = cfg.MODEL.ARCHITECTURE
    if name not in MODEL_REGISTRY:
        raise ConfigError(f"MODEL.ARCHITECTURE {name!r} is not registered; known: {sorted(MODEL_REGISTRY)}")
    return MODEL_REGISTRY[name]


def build_model(cfg):
    """Instantiate MODEL.ARCHITECTURE from the registry."""
    return get_model_class(cfg)(cfg)
