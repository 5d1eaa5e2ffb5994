"""The model registry: ``@register_model("NAME")`` on a ``GroundingModel`` subclass built as ``cls(cfg)``; and
the dispatch of a catalog split to the config's model's dataset."""
from ..config.loading import register_config_check
from ..data.catalog import get_entry
from ..data.provenance import check_video_extractor
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


@register_config_check
def check_model_config(cfg):
    """The config check of the registry: MODEL.ARCHITECTURE registered, and the model's own rules."""
    get_model_class(cfg).check_config(cfg)


def build_model(cfg):
    """Instantiate MODEL.ARCHITECTURE from the registry."""
    return get_model_class(cfg)(cfg)


def build_dataset(cfg, split_name, is_train=False):
    """The dataset of catalog split ``split_name`` (e.g. ``charades_test``) in the form the config's model
    reads (its ``build_dataset``: MMN one item per video, CNM and 2D-TAN one item per query). Features
    written by mmn-extract are checked against INPUT.VIDEO first (``check_video_extractor``)."""
    entry = get_entry(cfg, split_name)
    check_video_extractor(cfg, entry.feat_file)
    dataset = get_model_class(cfg).build_dataset(cfg, entry, is_train=is_train)
    dataset.split = split_name  # evaluation reads the split's catalog entry (IoU thresholds)
    return dataset
