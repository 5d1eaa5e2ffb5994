from .batch import TLGBatch
from .moments import cell_iou_targets, iou2d_from_moments, moment_grid, segment_iou

__all__ = ["TLGBatch", "cell_iou_targets", "iou2d_from_moments", "moment_grid", "segment_iou"]
