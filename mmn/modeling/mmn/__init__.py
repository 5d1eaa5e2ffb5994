from .mmn import MMN

__all__ = ["MMN"]
