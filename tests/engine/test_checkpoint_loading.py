"""Loading released-format checkpoints ({"model": state_dict}, keys with DDP's ``module.`` prefix)."""
import pytest
import torch

from conftest import PARITY_CHECKPOINT
from mmn.modeling import build_model
from mmn.utils.checkpoint import CheckpointError, load_model_weights


@pytest.fixture(scope="module")
def model(parity_cfg):
    return build_model(parity_cfg)


@pytest.fixture(scope="module")
def released_state():
    return torch.load(PARITY_CHECKPOINT, map_location="cpu", weights_only=True)["model"]


def test_released_checkpoint_loads_strictly(model, released_state):
    assert all(k.startswith("module.") for k in released_state)
    with torch.no_grad():  # make sure loading actually overwrites every tensor
        for tensor in model.state_dict().values():
            tensor.zero_() if not tensor.is_floating_point() else tensor.fill_(7.0)
    load_model_weights(model, PARITY_CHECKPOINT)
    own = model.state_dict()
    assert set(own) == {k[len("module."):] for k in released_state}
    for key, value in released_state.items():
        assert torch.equal(own[key[len("module."):]], value), key


def test_plain_keys_load_too(model, released_state, tmp_path):
    path = tmp_path / "plain.pth"
    torch.save({"model": {k[len("module."):]: v for k, v in released_state.items()}}, path)
    load_model_weights(model, str(path))
    assert torch.equal(model.state_dict()["featpool.conv.weight"], released_state["module.featpool.conv.weight"])


def test_missing_key_is_named(model, released_state, tmp_path):
    state = dict(released_state)
    del state["module.proposal_conv.bn.1.running_var"]
    del state["module.text_encoder.fc_out2.bias"]
    path = tmp_path / "missing.pth"
    torch.save({"model": state}, path)
    with pytest.raises(CheckpointError) as err:
        load_model_weights(model, str(path))
    message = str(err.value)
    assert "proposal_conv.bn.1.running_var" in message
    assert "text_encoder.fc_out2.bias" in message
    assert str(path) in message


def test_extra_key_is_named(model, released_state, tmp_path):
    state = dict(released_state)
    state["module.proposal_conv.extra_head.weight"] = torch.zeros(3)
    path = tmp_path / "extra.pth"
    torch.save({"model": state}, path)
    with pytest.raises(CheckpointError) as err:
        load_model_weights(model, str(path))
    assert "proposal_conv.extra_head.weight" in str(err.value)
    assert str(path) in str(err.value)


def test_shape_mismatch_names_the_key(model, released_state, tmp_path):
    state = dict(released_state)
    state["module.text_encoder.fc_out1.weight"] = torch.zeros(5, 768)
    path = tmp_path / "shape.pth"
    torch.save({"model": state}, path)
    with pytest.raises(CheckpointError) as err:
        load_model_weights(model, str(path))
    assert "text_encoder.fc_out1.weight" in str(err.value)
    assert "(5, 768)" in str(err.value)


@pytest.mark.parametrize("how", ["truncated", "garbage", "empty"])
def test_corrupt_file_names_the_file(model, tmp_path, how):
    path = tmp_path / f"{how}.pth"
    data = open(PARITY_CHECKPOINT, "rb").read()
    path.write_bytes({"truncated": data[: len(data) // 2], "garbage": b"\x00not a checkpoint" * 64,
                      "empty": b""}[how])
    with pytest.raises(CheckpointError) as err:
        load_model_weights(model, str(path))
    assert str(path) in str(err.value)


def test_missing_file_names_the_file(model, tmp_path):
    path = tmp_path / "nowhere.pth"
    with pytest.raises(CheckpointError) as err:
        load_model_weights(model, str(path))
    assert str(path) in str(err.value)


def test_failed_load_leaves_the_model_untouched(model, released_state, tmp_path):
    load_model_weights(model, PARITY_CHECKPOINT)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    state = {k: v + 1 if v.is_floating_point() else v for k, v in released_state.items()}
    del state["module.featpool.conv.bias"]
    path = tmp_path / "partial.pth"
    torch.save({"model": state}, path)
    with pytest.raises(CheckpointError):
        load_model_weights(model, str(path))
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
