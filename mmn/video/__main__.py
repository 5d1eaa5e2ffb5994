"""``python -m mmn.video ...`` is ``mmn-extract ...``."""
from .extract import main

main()
