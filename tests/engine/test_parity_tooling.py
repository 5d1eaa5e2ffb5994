"""The parity reports take any fixture folder in the official layouts (tests/tan_parity_report.py,
tests/mmn_parity_report.py), and fail when a recorded value is not reproduced.

- The official 2D-TAN fixture with its Charades-STA JSON files removed: read from the official txt + csv,
  it must still reproduce the official outputs (real parity, through the other layout).
- Generated folders in the ActivityNet (validation split, SparsePropConv) and TACoS (no validation split,
  MaxPool) JSON layouts, and an MMN folder in the TACoS layout: their "expected" outputs come from this
  implementation (tests/smoke_fixtures.py), so they check that the tooling reads the layout, the splits,
  the test interval in updates and the scheduler steps -- not parity. One changed recorded value must
  make the report fail.
"""
import os
import shutil
import subprocess
import sys

import pytest
import torch

from helpers.paths import TESTS_DIR
import mmn_parity_report
import tan_parity_report
from smoke_fixtures import build_mmn_fixture, build_tan_fixture
from tan_fixture import DEFAULT_DIR as TAN_DIR

torch.set_num_threads(1)
TESTS = TESTS_DIR


def report(module, folder, capsys):
    code = module.main(["report", str(folder)])
    return code, capsys.readouterr().out


def test_tan_report_reads_the_official_charades_txt_layout(tmp_path):
    """The official fixture without charades_{split}.json: the txt + csv are read with the official loader's
    rules, and every official output is still reproduced (through the command line)."""
    folder = tmp_path / "tan_txt"
    shutil.copytree(TAN_DIR, folder)
    for split in ("train", "test"):
        os.remove(folder / "data" / "Charades-STA" / f"charades_{split}.json")
    result = subprocess.run([sys.executable, os.path.join(TESTS, "tan_parity_report.py"), str(folder)],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "splits train, test" in result.stdout and "evaluations at updates [2] (test interval 2)" in result.stdout


@pytest.mark.parametrize("dataset,with_val", [("ActivityNet", True), ("TACoS", False)])
def test_tan_report_reads_json_layouts_and_fails_on_a_changed_value(tmp_path, capsys, dataset, with_val):
    folder = tmp_path / dataset
    fx = build_tan_fixture(str(folder), dataset, with_val=with_val)
    code, out = report(tan_parity_report, folder, capsys)
    assert code == 0, out[-3000:]
    splits = "train, val, test" if with_val else "train, test"
    assert f"splits {splits}" in out and "test interval 2 updates" in out
    assert "evaluations at updates [2, 4, 6]" in out
    if with_val:
        assert "update 2 eval val: recall hits" in out
    expected = fx.load_expected()
    if with_val:  # the validation loss drove the scheduler: the learning rate was cut
        assert expected["steps"][-1]["lr_next"][0] < expected["steps"][0]["lr"][0]
    name = next(iter(expected["steps"][-1]["state"]))
    expected["steps"][-1]["state"][name] += 1e-3
    torch.save(expected, fx.expected_path)
    code, out = report(tan_parity_report, folder, capsys)
    assert code == 1 and "outside: ['update 6: weights']" in out


def test_mmn_report_reads_the_tacos_layout_and_fails_on_a_changed_value(tmp_path, capsys):
    folder = tmp_path / "mmn_tacos"
    fx = build_mmn_fixture(str(folder), "TACoS")
    code, out = report(mmn_parity_report, folder, capsys)
    assert code == 0, out[-3000:]
    assert "tacos (tacos_train, tacos_test under dataset/)" in out
    expected = fx.load_expected()
    assert "R@1,IoU@0.1" in expected["eval"]["recall"]  # TACoS's thresholds, from its catalog entry
    expected["eval"]["featpool"][0, 0, 0] += 1e-3
    torch.save(expected, fx.expected_path)
    code, out = report(mmn_parity_report, folder, capsys)
    assert code == 1 and "outside: ['eval featpool']" in out
