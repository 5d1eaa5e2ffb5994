"""Moment-DETR (NeurIPS 2021, jayleicn/moment_detr). Importing this package declares MODEL.MOMENT_DETR.

Not yet in the model registry: the contract's data, prediction and engine hooks come with the integration.
"""
from . import config  # noqa: F401  (declares MODEL.MOMENT_DETR)
from .model import MomentDETR

__all__ = ["MomentDETR"]
