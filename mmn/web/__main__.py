"""``python -m mmn.web ...`` is ``mmn-web ...``."""
from .cli import cli

raise SystemExit(cli())
