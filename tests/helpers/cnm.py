"""Helpers shared by the CNM tests (tests/test_cnm_*.py): configs of the CNM architecture and a float diff."""
from mmn.config import get_default_config


def cnm_cfg(**overrides):
    """Default config (MODEL.CNM included) for the CNM architecture, overridden."""
    cfg = get_default_config()
    cfg.defrost()
    cfg.MODEL.ARCHITECTURE = "CNM"
    for key, value in overrides.items():
        node = cfg.MODEL.CNM
        *path, last = key.split(".")
        for p in path:
            node = node[p]
        node[last] = value
    return cfg


def small_cfg(**extra):
    kw = dict(FRAME_DIM=6, WORD_DIM=8, HIDDEN_SIZE=16, NUM_HEADS=2, NUM_LAYERS_1=1, NUM_LAYERS_2=1,
              VOCAB_SIZE=12, NUM_FRAMES=16, DROPOUT=0.0, TRANSFORMER_DROPOUT=0.0)
    kw.update(extra)
    return cnm_cfg(**kw)


def maxdiff(a, b):
    return (a.float() - b.float()).abs().max().item()

