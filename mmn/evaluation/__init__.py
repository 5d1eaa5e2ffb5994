"""Evaluation shared by every model: the recall table and greedy NMS over 2D score maps (no model here)."""
from .recall import RECALLS, metric_spec, recall_table
from .score_maps import score_map_top_moments

__all__ = ["RECALLS", "metric_spec", "recall_table", "score_map_top_moments"]
