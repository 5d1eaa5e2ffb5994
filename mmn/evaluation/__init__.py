from .recall import (RECALLS, evaluate_predictions, fuse_scores, fused_top_moments, metric_spec, recall_table,
                     top_moments)

__all__ = ["RECALLS", "evaluate_predictions", "metric_spec", "fuse_scores", "fused_top_moments", "recall_table",
           "top_moments"]
