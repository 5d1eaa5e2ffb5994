from .moments import cell_iou_targets, segment_iou
from .string_table import StringTable

__all__ = ["StringTable", "cell_iou_targets", "segment_iou"]
