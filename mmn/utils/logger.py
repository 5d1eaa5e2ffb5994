"""Logging to the console and OUTPUT_DIR/log.txt (rank 0 only)."""
import logging
import os
import sys


def setup_logger(output_dir=None, rank=0, filename="log.txt"):
    """Configure the ``mmn`` logger once: INFO on rank 0 (console + file), WARNING elsewhere."""
    logger = logging.getLogger("mmn")
    logger.setLevel(logging.INFO if rank == 0 else logging.WARNING)
    logger.propagate = False
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()
    fmt = logging.Formatter("%(asctime)s %(name)s %(levelname)s: %(message)s", "%H:%M:%S")
    console = logging.StreamHandler(stream=sys.stdout)
    console.setFormatter(fmt)
    logger.addHandler(console)
    if output_dir and rank == 0:
        os.makedirs(output_dir, exist_ok=True)
        file_handler = logging.FileHandler(os.path.join(output_dir, filename))
        file_handler.setFormatter(fmt)
        logger.addHandler(file_handler)
    return logger
