"""QD-DETR (CVPR 2023, wjun0830/QD-DETR). Importing this package declares MODEL.QD_DETR.

Not yet in the model registry: the contract's data, prediction and engine hooks come with the integration,
as for Moment-DETR, whose hooks this model inherits.
"""
from . import config  # noqa: F401  (declares MODEL.QD_DETR)
from .model import QDDETR

__all__ = ["QDDETR"]
