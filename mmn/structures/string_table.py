"""Many short strings stored as one string plus offsets."""
from collections.abc import Sequence

import numpy as np


class StringTable(Sequence):
    """A read-only list of strings kept as one ``str`` and an int64 offset array.

    A dataset keeps tens of thousands of sentences and video ids. As separate ``str`` objects
    created by the JSON parser they stay scattered over the interpreter's small-object arenas and
    keep those arenas (and the freed parse objects around them) resident; one string does not.
    """

    def __init__(self, strings):
        strings = list(strings)
        self._text = "".join(strings)
        self._offsets = np.zeros(len(strings) + 1, dtype=np.int64)
        np.cumsum([len(s) for s in strings], out=self._offsets[1:])

    def __len__(self):
        return len(self._offsets) - 1

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(f"StringTable index {index} out of range ({len(self)} strings)")
        return self._text[self._offsets[index]:self._offsets[index + 1]]

    def __eq__(self, other):
        return isinstance(other, Sequence) and not isinstance(other, str) and list(self) == list(other)

    def __repr__(self):
        return f"StringTable({len(self)} strings)"
