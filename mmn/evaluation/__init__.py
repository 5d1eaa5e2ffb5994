from .recall import IOU_THRESHOLDS, evaluate_predictions, fuse_scores, metric_spec, recall_table, top_moments

__all__ = ["IOU_THRESHOLDS", "evaluate_predictions", "metric_spec", "fuse_scores", "recall_table", "top_moments"]
