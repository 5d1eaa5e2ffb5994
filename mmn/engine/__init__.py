from .inference import evaluate, format_recall_table, run_inference
from .trainer import do_train

__all__ = ["do_train", "evaluate", "format_recall_table", "run_inference"]
