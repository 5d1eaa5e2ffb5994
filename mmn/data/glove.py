"""GloVe word vectors: the text format of the GloVe release and an .npz form (words, vectors[, counts]).

Shared by the models that read GloVe.
"""
import numpy as np

from ..utils.errors import MMNError


class GloveError(MMNError, ValueError):
    """A GloVe file that cannot be read, with the file (and the line) named."""


def load_glove_text(path, words=None, dim=300):
    """{word: float32 vector} from a GloVe text file (``word v1 ... v_dim`` per line).

    The word is everything before the last ``dim`` fields (glove.840B has words with spaces);
    ``words``: keep only these (saves memory on the 2.2M-word files). A repeated word keeps its last
    vector, as the authors' script (a dict filled line by line). Malformed lines raise GloveError
    naming the line.
    """
    wanted = None if words is None else set(words)
    vectors = {}
    with open(path, "r", encoding="utf-8", errors="strict") as f:
        for lineno, line in enumerate(f, 1):
            parts = line.rstrip("\n").rstrip(" ").split(" ")
            if len(parts) < dim + 1:
                if lineno == 1 and len(parts) == 2:  # word2vec-style "count dim" header
                    continue
                raise GloveError(f"{path}:{lineno}: expected a word and {dim} numbers, got {len(parts)} fields")
            word = " ".join(parts[:-dim])
            if wanted is not None and word not in wanted:
                continue
            try:
                vectors[word] = np.asarray(parts[-dim:], dtype=np.float32)
            except ValueError:
                raise GloveError(f"{path}:{lineno}: non-numeric vector for {word!r}") from None
    return vectors


def load_glove_npz(path):
    """(words list, vectors N x D float32, counts N int64 or None) from an npz with ``words``,
    ``vectors`` and optionally ``counts`` (row 0 conventionally ``<PAD>``)."""
    with np.load(path, allow_pickle=False) as data:
        for key in ("words", "vectors"):
            if key not in data.files:
                raise GloveError(f"{path}: missing array {key!r} (has {data.files})")
        words = [str(w) for w in data["words"]]
        vectors = np.asarray(data["vectors"], dtype=np.float32)
        counts = np.asarray(data["counts"], dtype=np.int64) if "counts" in data.files else None
    if vectors.ndim != 2 or vectors.shape[0] != len(words):
        raise GloveError(f"{path}: {len(words)} words but vectors of shape {vectors.shape}")
    if counts is not None and counts.shape != (len(words),):
        raise GloveError(f"{path}: {len(words)} words but counts of shape {counts.shape}")
    return words, vectors, counts
