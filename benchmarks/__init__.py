"""Benchmarks of ``mmn`` against the official MMN algorithms; ``python -m benchmarks.run --help``."""
