"""Offline end-to-end demo: synthetic Charades-STA data, sentence-blind baselines, offline text encoder.

``python -m mmn.demo`` writes the synthetic dataset, trains MMN on CPU with ``configs/demo_synthetic.yaml``,
evaluates it and prints its recall table beside the random and prior baselines.
"""
from .baselines import baseline_tables, dataset_baseline_tables
from .synthetic import write_synthetic_charades
from .text_encoder import OfflineTextEncoderError, resolve_offline_text_encoder

__all__ = ["OfflineTextEncoderError", "baseline_tables", "dataset_baseline_tables", "resolve_offline_text_encoder",
           "write_synthetic_charades"]
