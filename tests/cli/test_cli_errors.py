"""Errors of the project's own kinds reach the user as one line, not a traceback.

The entry points run as real subprocesses of this clone (cwd and PYTHONPATH = the repository root that
holds this file): stderr is one ``prog: error: ...`` line naming the file or the key, the exit status 2,
the line is also in OUTPUT_DIR/log.txt once the logger writes there; ``--debug`` or MMN_DEBUG=1 shows the
traceback. In-process tests cover run_cli itself.
"""
import json
import logging
import os
import shutil
import subprocess
import sys

import pytest
import torch

from mmn.utils.errors import MMNError, one_line_message, run_cli

from helpers.paths import PARITY_DIR, REPO_ROOT
PARITY_CONFIG = os.path.join(PARITY_DIR, "config.yaml")


def run_entry_point(args, env_extra=None, timeout=300):
    """Run ``python <args>`` from this clone's root; returns the CompletedProcess."""
    # no warnings nor transformers' "Loading weights" progress bar: stderr then holds only the error
    env = dict(os.environ, PYTHONPATH=REPO_ROOT, PYTHONWARNINGS="ignore", TRANSFORMERS_OFFLINE="1",
               HF_HUB_OFFLINE="1", HF_HUB_DISABLE_PROGRESS_BARS="1")
    env.pop("MMN_DEBUG", None)
    env.update(env_extra or {})
    return subprocess.run([sys.executable, *args], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)


def assert_one_line_error(result, prog, *named):
    """Exit status 2 and stderr exactly one ``prog: error:`` line that names every item of ``named``."""
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, (result.returncode, result.stderr[-3000:])
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    assert len(lines) == 1 and lines[0].startswith(f"{prog}: error: "), result.stderr
    for item in named:
        assert str(item) in lines[0], f"{item!r} not named in: {lines[0]}"
    return lines[0]


@pytest.fixture()
def parity_args(parity_text_encoder_dir, tmp_path):
    """Config-file arguments and overrides of the tiny parity fixture, writing to a fresh OUTPUT_DIR."""
    output_dir = str(tmp_path / "out")
    overrides = ["MODEL.MMN.TEXT_ENCODER.PRETRAINED", parity_text_encoder_dir, "MODEL.DEVICE", "cpu",
                 "DATASETS.ROOT", os.path.join(PARITY_DIR, "dataset"), "OUTPUT_DIR", output_dir]
    return ["--config-file", PARITY_CONFIG], overrides, output_dir


def log_text(output_dir):
    with open(os.path.join(output_dir, "log.txt")) as f:
        return f.read()


# --------------------------------------------------------------------------------------------- config

@pytest.mark.slow
@pytest.mark.parametrize("script", ["train_net.py", "test_net.py"])
def test_config_file_not_found(script, tmp_path):
    missing = str(tmp_path / "nope.yaml")
    extra = ["--ckpt", "x.pth"] if script == "test_net.py" else []
    assert_one_line_error(run_entry_point([script, "--config-file", missing, *extra]), script, missing)


@pytest.mark.slow
def test_unknown_config_key_then_the_traceback_with_debug(tmp_path):
    args = ["train_net.py", "--config-file", PARITY_CONFIG, "OUTPUT_DIR", str(tmp_path), "SOLVER.MAX_EPOCHS", "3"]
    assert_one_line_error(run_entry_point(args), "train_net.py", "SOLVER.MAX_EPOCHS")
    for result in (run_entry_point(args + ["--debug"]), run_entry_point(args, {"MMN_DEBUG": "1"})):
        assert result.returncode == 1
        assert "Traceback" in result.stderr and "ConfigError" in result.stderr and "SOLVER.MAX_EPOCHS" in result.stderr


@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_device_without_cuda_names_model_device(tmp_path):
    args = ["test_net.py", "--config-file", PARITY_CONFIG, "--ckpt", "x.pth", "OUTPUT_DIR", str(tmp_path),
            "MODEL.DEVICE", "cuda"]
    line = assert_one_line_error(run_entry_point(args), "test_net.py", "MODEL.DEVICE", "cpu", "auto")
    assert "CUDA is not available" in line


@pytest.mark.slow
def test_demo_config_file_not_found(tmp_path):
    missing = str(tmp_path / "nope.yaml")
    result = run_entry_point(["-m", "mmn.demo", "--config-file", missing, "--output-dir", str(tmp_path / "demo")])
    assert_one_line_error(result, "python -m mmn.demo", missing)


# --------------------------------------------------------------------------------------------- checkpoint, data

@pytest.mark.slow
def test_missing_checkpoint_for_test_net_is_also_in_log_txt(parity_args, tmp_path):
    config, overrides, output_dir = parity_args
    missing = str(tmp_path / "absent.pth")
    line = assert_one_line_error(run_entry_point(["test_net.py", *config, "--ckpt", missing, *overrides]),
                                 "test_net.py", missing, "checkpoint not found")
    assert line in log_text(output_dir)


@pytest.mark.slow
def test_malformed_annotation_json_for_train_net_is_also_in_log_txt(parity_args, tmp_path):
    config, overrides, output_dir = parity_args
    data_root = tmp_path / "dataset"
    shutil.copytree(os.path.join(PARITY_DIR, "dataset"), data_root)
    broken = data_root / "Charades_STA" / "charades_train.json"
    broken.write_text(broken.read_text()[:-20])  # truncated
    overrides = overrides + ["DATASETS.ROOT", str(data_root)]
    line = assert_one_line_error(run_entry_point(["train_net.py", *config, *overrides]), "train_net.py",
                                 str(broken), "malformed JSON")
    assert line in log_text(output_dir)
    assert not [f for f in os.listdir(output_dir) if f.endswith(".pth")]


# --------------------------------------------------------------------------------------------- run_cli in process

class DemoError(MMNError, ValueError):
    pass


def test_run_cli_strips_debug_and_exits_2_with_one_line(capsys, monkeypatch):
    monkeypatch.delenv("MMN_DEBUG", raising=False)
    seen = []

    def main(argv):
        seen.append(argv)
        raise DemoError("data.json: video 'v1':\n  bad timestamp")
    with pytest.raises(SystemExit) as exit_info:
        run_cli(main, ["--config-file", "c.yaml"], prog="tool")
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == "tool: error: data.json: video 'v1': bad timestamp\n"
    with pytest.raises(DemoError):
        run_cli(main, ["--debug", "--config-file", "c.yaml"], prog="tool")
    assert seen == [["--config-file", "c.yaml"]] * 2  # --debug never reaches main's parser
    assert run_cli(lambda argv: argv, ["a", "--debug"]) == ["a"]


@pytest.mark.parametrize("value,debug", [("1", True), ("yes", True), ("0", False), ("", False)])
def test_mmn_debug_environment_variable(monkeypatch, value, debug):
    monkeypatch.setenv("MMN_DEBUG", value)

    def main(argv):
        raise DemoError("x")
    with pytest.raises(DemoError if debug else SystemExit):
        run_cli(main, [])


def test_unexpected_exceptions_keep_their_traceback(monkeypatch):
    monkeypatch.delenv("MMN_DEBUG", raising=False)

    def main(argv):
        raise ValueError("a bug, not bad input")
    with pytest.raises(ValueError, match="a bug"):
        run_cli(main, [])


def test_run_cli_writes_the_line_to_the_log_file_only_once(tmp_path, capsys, monkeypatch):
    from mmn.utils.logger import setup_logger

    monkeypatch.delenv("MMN_DEBUG", raising=False)
    mmn_logger = logging.getLogger("mmn")
    before = mmn_logger.level, mmn_logger.propagate  # restored after the test
    setup_logger(str(tmp_path))
    try:
        def main(argv):
            logging.getLogger("mmn").info("started")
            raise DemoError("ann.json: broken")
        with pytest.raises(SystemExit):
            run_cli(main, [], prog="tool")
        captured = capsys.readouterr()
        assert captured.err == "tool: error: ann.json: broken\n" and "broken" not in captured.out
        text = log_text(str(tmp_path))
        assert "started" in text and text.count("tool: error: ann.json: broken") == 1
    finally:
        for handler in list(mmn_logger.handlers):
            mmn_logger.removeHandler(handler)
            handler.close()
        mmn_logger.setLevel(before[0])
        mmn_logger.propagate = before[1]


class _FailingItems(torch.utils.data.Dataset):
    def __len__(self):
        return 2

    def __getitem__(self, index):
        from mmn.data.features import FeatureError
        raise FeatureError("feats.hdf5: video 'vNaN': features contain NaN or Inf")


def test_error_from_a_dataloader_worker_keeps_only_the_message():
    """torch re-raises a worker's error as the same class with the worker's traceback in the message."""
    from mmn.data.features import FeatureError

    loader = torch.utils.data.DataLoader(_FailingItems(), num_workers=1)
    with pytest.raises(FeatureError) as err:
        next(iter(loader))
    assert "Traceback" in str(err.value)
    assert one_line_message(err.value) == "feats.hdf5: video 'vNaN': features contain NaN or Inf"


def test_project_errors_are_mmn_errors_and_keep_their_old_bases():
    from mmn.config.loading import ConfigError
    from mmn.data.annotations import AnnotationError
    from mmn.data.features import FeatureError
    from mmn.modeling.mmn.tokenization import TextEncoderLoadError
    from mmn.predict import PredictionInputError
    from mmn.utils.checkpoint import CheckpointError

    for error, old_base in ((ConfigError, ValueError), (AnnotationError, ValueError), (FeatureError, ValueError),
                            (CheckpointError, RuntimeError), (TextEncoderLoadError, RuntimeError),
                            (PredictionInputError, ValueError)):
        assert issubclass(error, MMNError) and issubclass(error, old_base), error


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
@pytest.mark.parametrize("name", ["cuda", "cuda:1"])
def test_resolve_device_cuda_without_cuda(name):
    from mmn.config import resolve_device
    from mmn.config.loading import ConfigError

    with pytest.raises(ConfigError, match=r"MODEL.DEVICE .*(cpu|auto)"):
        resolve_device(name)
    assert resolve_device("auto") == torch.device("cpu")


@pytest.mark.parametrize("name", ["gpu", "cuda:x", ""])
def test_resolve_device_invalid_string(name):
    from mmn.config import resolve_device
    from mmn.config.loading import ConfigError

    with pytest.raises(ConfigError, match="MODEL.DEVICE"):
        resolve_device(name)


def test_resolve_device_cuda_index_beyond_the_gpus(monkeypatch):
    from mmn.config import resolve_device
    from mmn.config.loading import ConfigError

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("cuda:1") == torch.device("cuda:1")
    with pytest.raises(ConfigError, match="cuda:0 to cuda:1"):
        resolve_device("cuda:2")
