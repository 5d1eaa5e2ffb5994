"""Parity checks against recorded official outputs, measured (rows of differences) rather than asserted:
used by the parity tests and by the parity report scripts."""
