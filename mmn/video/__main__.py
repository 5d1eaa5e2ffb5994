"""``python -m mmn.video ...`` is ``mmn-extract ...``."""
from .extract import cli

raise SystemExit(cli())
