from .moments import cell_iou_targets, segment_iou
from .spans import generalized_temporal_iou, span_cxw_to_xx, span_xx_to_cxw, temporal_iou
from .string_table import StringTable

__all__ = ["StringTable", "cell_iou_targets", "generalized_temporal_iou", "segment_iou", "span_cxw_to_xx",
           "span_xx_to_cxw", "temporal_iou"]
