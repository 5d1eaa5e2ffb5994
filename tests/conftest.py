"""Shared fixtures: the parity fixture of the official MMN (tests/fixtures/parity, see its README).

The fixture's text encoder is rebuilt at test time instead of being stored: its BERT weights are exactly
the ``module.text_encoder.bert.*`` tensors of ``checkpoint_init.pth``, so a ``from_pretrained`` directory
is made once per session from the three small config/vocab files plus those tensors.
"""
import json
import logging
import os
import shutil

import pytest
import torch

import mmn.modeling  # noqa: F401  (declares every model's config node: the tests build full configs)

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
PARITY_DIR = os.path.join(TESTS_DIR, "fixtures", "parity")
PARITY_DATA_DIR = os.path.join(PARITY_DIR, "dataset", "Charades_STA")
PARITY_CONFIG = os.path.join(PARITY_DIR, "config.yaml")
PARITY_CHECKPOINT = os.path.join(PARITY_DIR, "checkpoint_init.pth")
PARITY_EXPECTED = os.path.join(PARITY_DIR, "expected.pt")
TEXT_ENCODER_FILES = ("config.json", "vocab.txt", "tokenizer_config.json")
BERT_PREFIX = "module.text_encoder.bert."


def build_parity_text_encoder(target_dir, checkpoint_path=PARITY_CHECKPOINT, fixture_dir=PARITY_DIR):
    """Write a ``from_pretrained`` directory (model and tokenizer) of the fixture's DistilBERT into ``target_dir``
    (``fixture_dir``: a fixture folder of that form, tests/mmn_fixture.py)."""
    from transformers import DistilBertConfig, DistilBertModel

    os.makedirs(target_dir, exist_ok=True)
    for name in TEXT_ENCODER_FILES:
        shutil.copy(os.path.join(fixture_dir, "text_encoder", name), os.path.join(target_dir, name))
    state = torch.load(checkpoint_path, map_location="cpu", weights_only=True)["model"]
    bert_state = {k[len(BERT_PREFIX):]: v for k, v in state.items() if k.startswith(BERT_PREFIX)}
    bert = DistilBertModel(DistilBertConfig.from_pretrained(target_dir))
    bert.load_state_dict(bert_state, strict=True)
    bert.save_pretrained(target_dir)
    return target_dir


@pytest.fixture(scope="session")
def parity_text_encoder_dir(tmp_path_factory):
    """A from_pretrained directory of the parity fixture's text encoder (model + tokenizer)."""
    return build_parity_text_encoder(str(tmp_path_factory.mktemp("parity_text_encoder")))


@pytest.fixture(scope="session")
def parity_expected():
    """The official outputs (see tests/fixtures/parity/README.md)."""
    return torch.load(PARITY_EXPECTED, map_location="cpu", weights_only=True)


@pytest.fixture(scope="session")
def parity_cfg(parity_text_encoder_dir):
    """The fixture's official config, pointed at the rebuilt text encoder and the fixture dataset, on CPU."""
    from mmn.config import load_config

    return load_config(PARITY_CONFIG, ["MODEL.MMN.TEXT_ENCODER.PRETRAINED", parity_text_encoder_dir,
                                       "MODEL.DEVICE", "cpu",
                                       "DATASETS.ROOT", os.path.join(PARITY_DIR, "dataset")])


@pytest.fixture(scope="session")
def dropout_text_encoder(parity_text_encoder_dir, tmp_path_factory):
    """The fixture's encoder with dropout 0.1, so that training consumes the torch RNG."""
    target = str(tmp_path_factory.mktemp("dropout_encoder"))
    for name in os.listdir(parity_text_encoder_dir):
        shutil.copy(os.path.join(parity_text_encoder_dir, name), target)
    with open(os.path.join(target, "config.json")) as f:
        config = json.load(f)
    config.update(dropout=0.1, attention_dropout=0.1)
    with open(os.path.join(target, "config.json"), "w") as f:
        json.dump(config, f)
    return target


@pytest.fixture(autouse=True)
def mmn_logs_reach_caplog():
    """Each test starts with the "mmn" logger propagating, so that caplog sees its records whatever ran before
    (``setup_logger``, run by the engine, the demo and the entry points, stops the propagation)."""
    logger = logging.getLogger("mmn")
    saved, logger.propagate = logger.propagate, True
    yield
    logger.propagate = saved
