from .batch import TLGBatch
from .moments import iou2d_from_moments, segment_iou, moment_grid

__all__ = ["TLGBatch", "iou2d_from_moments", "segment_iou", "moment_grid"]
