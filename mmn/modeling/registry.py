"""Model registry: ``@register_model("NAME")`` on a class built as ``cls(cfg)``."""
MODEL_REGISTRY = {}


def register_model(name):
    def wrap(cls):
        if name in MODEL_REGISTRY:
            raise KeyError(f"model {name!r} registered twice")
        MODEL_REGISTRY[name] = cls
        return cls
    return wrap


def build_model(cfg):
    """Instantiate MODEL.ARCHITECTURE from the registry."""
    name = cfg.MODEL.ARCHITECTURE
    if name not in MODEL_REGISTRY:
        raise KeyError(f"MODEL.ARCHITECTURE {name!r} is not registered; known: {sorted(MODEL_REGISTRY)}")
    return MODEL_REGISTRY[name](cfg)
