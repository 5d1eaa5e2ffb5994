"""The engine: the one training step and loop (``trainer``), the evaluation it owns (``inference``), the run
folder (``output_dir``) and what the entry points share (``entry``)."""
from .entry import argument_parser, parse_args, setup
from .inference import evaluate, evaluate_checkpoint, format_recall_table, recall_metrics, run_inference
from .output_dir import check_output_dir
from .trainer import do_train, run_step, train, wrap_model

__all__ = ["argument_parser", "check_output_dir", "do_train", "evaluate", "evaluate_checkpoint",
           "format_recall_table", "parse_args", "recall_metrics", "run_inference", "run_step", "setup", "train",
           "wrap_model"]
