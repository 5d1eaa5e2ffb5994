"""MMN's query tokenisation with its text encoder's own WordPiece tokenizer, and the loading of both."""
import functools

import numpy as np

from ...utils.errors import MMNError


class TextEncoderLoadError(MMNError, RuntimeError):
    """The tokenizer or text encoder could not be loaded from the given name or path."""


def from_pretrained(auto_class, name_or_path, what):
    """``auto_class.from_pretrained(name_or_path)``, or a TextEncoderLoadError that says how to work offline."""
    try:
        return auto_class.from_pretrained(name_or_path)
    except (OSError, ValueError) as err:
        raise TextEncoderLoadError(
            f"cannot load the {what} {name_or_path!r} ({err.__class__.__name__}: {err}). Without network, "
            "set MODEL.MMN.TEXT_ENCODER.PRETRAINED to a local from_pretrained directory") from None


@functools.lru_cache(maxsize=4)
def load_tokenizer(name_or_path):
    """``AutoTokenizer.from_pretrained(name_or_path)``; a hub name needs network or a local cache."""
    from transformers import AutoTokenizer

    return from_pretrained(AutoTokenizer, name_or_path, "tokenizer")


def tokenize(sentences, tokenizer):
    """Token ids of each sentence ([CLS] ... [SEP]), as a flat int32 array and per-sentence lengths."""
    encoded = tokenizer(list(sentences), padding=False, truncation=False)["input_ids"]
    lengths = np.fromiter((len(ids) for ids in encoded), dtype=np.int64, count=len(encoded))
    flat = np.fromiter((t for ids in encoded for t in ids), dtype=np.int32, count=int(lengths.sum()))
    return flat, lengths
