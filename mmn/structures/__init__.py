from .moments import cell_iou_targets, iou2d_from_moments, segment_iou
from .string_table import StringTable

__all__ = ["StringTable", "cell_iou_targets", "iou2d_from_moments", "segment_iou"]
