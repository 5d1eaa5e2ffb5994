"""The project's own error kinds and the command-line wrapper that reports them in one line.

Every error raised for bad input (config, annotation, features, checkpoint, text encoder, device)
subclasses ``MMNError``; ``run_cli`` turns one into ``prog: error: <message>`` on stderr (and in
OUTPUT_DIR/log.txt when the logger writes one), exit status 2, the status argparse uses for a bad
command line. Any other exception is a bug and keeps its traceback.
"""
import logging
import os
import sys

DEBUG_FLAG = "--debug"
DEBUG_ENV = "MMN_DEBUG"
EXIT_STATUS = 2


class MMNError(Exception):
    """Base of the errors about the user's input; the message names the file and the item."""


class ConfigError(MMNError, ValueError):
    """A config file, override or catalog entry that cannot be applied; the message names the key."""


def debug_requested(argv=None):
    """``--debug`` among the arguments, or MMN_DEBUG set to anything but "", "0", "false", "no"."""
    if argv is not None and DEBUG_FLAG in argv:
        return True
    return os.environ.get(DEBUG_ENV, "").strip().lower() not in ("", "0", "false", "no")


def one_line_message(err):
    """The error's message on one line.

    An error raised in a DataLoader worker is re-raised by torch as the same class with a message of
    "Caught X in DataLoader worker process N. Original Traceback ... X: <message>": keep the message.
    """
    message = str(err)
    if "Original Traceback (most recent call last)" in message:
        marker = f"{type(err).__name__}: "
        at = message.rfind(marker)
        if at >= 0:
            message = message[at + len(marker):]
    return " ".join(message.split())


def log_to_files(message, logger_name="mmn"):
    """Write ``message`` as an ERROR record to the file handlers of ``logger_name`` only (the console
    already gets it on stderr); nothing when no file handler is set up."""
    logger = logging.getLogger(logger_name)
    record = logger.makeRecord(logger.name, logging.ERROR, "(run_cli)", 0, message, None, None)
    for handler in logger.handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)
            handler.flush()


def run_cli(main, argv=None, prog=None):
    """Run ``main(argv)`` as a command: an ``MMNError`` becomes one line on stderr and exit status 2.

    ``argv`` defaults to ``sys.argv[1:]``; ``--debug`` is removed from it before ``main`` sees it and,
    like MMN_DEBUG=1, lets the error propagate with its traceback. Returns what ``main`` returns.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = debug_requested(argv)
    argv = [arg for arg in argv if arg != DEBUG_FLAG]
    prog = prog or os.path.basename(sys.argv[0] or "mmn")
    try:
        return main(argv)
    except MMNError as err:
        if debug:
            raise
        line = f"{prog}: error: {one_line_message(err)}"
        log_to_files(line)
        print(line, file=sys.stderr, flush=True)
        raise SystemExit(EXIT_STATUS) from None
