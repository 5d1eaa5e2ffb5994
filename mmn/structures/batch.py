"""What every model's batch dataclass shares: moving all its tensors at once."""
from dataclasses import fields


class TensorBatch:
    """Mixin for a dataclass of tensors: ``to`` and ``pin_memory`` apply to every field."""

    def to(self, device, non_blocking=False):
        return type(self)(**{f.name: getattr(self, f.name).to(device, non_blocking=non_blocking) for f in fields(self)})

    def pin_memory(self):
        return type(self)(**{f.name: getattr(self, f.name).pin_memory() for f in fields(self)})
