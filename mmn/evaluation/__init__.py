from .recall import (IOU_THRESHOLDS, evaluate_predictions, fuse_scores, fused_top_moments, metric_spec, recall_table,
                     top_moments)

__all__ = ["IOU_THRESHOLDS", "evaluate_predictions", "metric_spec", "fuse_scores", "fused_top_moments", "recall_table",
           "top_moments"]
