"""The shipped configs are the official experiments, value for value.

tests/fixtures/official_configs.yaml holds the official values (every key of each official experiment file,
of the defaults file it is merged into, and the values the official code hard-codes), each with its file;
tests/official_configs.py maps each official key onto ours. Every shipped config is loaded through our
loader (so our defaults count) and compared key by key; a wrong value fails naming our key, the official
key and value, and the official file. A deliberate run-time difference passes only when its YAML line
says ``# (ours)``. When a mirror of the official repositories is present, the table itself is re-read
from the official files.
"""
import glob
import os
import subprocess

import pytest

from official_configs import (CONFIGS_DIR, check_config, hard_coded, load_table, merge_2dtan, official_experiment,
                              parse_official_yaml, parse_python_defaults, rule_for, expected_value, our_value,
                              normalise)

TABLE = load_table()
EXPERIMENTS = sorted(TABLE["experiments"])

# shipped configs that are no official experiment, and why
OWN_CONFIGS = {
    "demo_synthetic": "the offline MMN demo on synthetic data",
    "tan_demo_synthetic": "the offline 2D-TAN demo, scaled down for a CPU",
    "cnm_demo_synthetic": "the offline CNM demo",
    "cnm_charades": "CNM: its official code is not mirrored here (tests/test_cnm_configs.py)",
    "cnm_activitynet": "CNM: its official code is not mirrored here (tests/test_cnm_configs.py)",
    "pool_clip_b32_fps05": "MMN on CLIP features of one's own videos (no official experiment)",
    "pool_clip_b32_fps05_long": "MMN on CLIP features of one's own videos (no official experiment)",
}


def test_every_shipped_config_is_an_official_experiment_or_ours():
    shipped = {os.path.splitext(os.path.basename(p))[0] for p in glob.glob(os.path.join(CONFIGS_DIR, "*.yaml"))}
    unclassified = sorted(shipped - set(EXPERIMENTS) - set(OWN_CONFIGS))
    assert not unclassified, (f"{unclassified}: add the official experiment to tests/fixtures/official_configs.yaml "
                              "or the config to OWN_CONFIGS with the reason")
    assert not sorted((set(EXPERIMENTS) | set(OWN_CONFIGS)) - shipped)


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_shipped_config_equals_the_official_experiment(name):
    failures = check_config(name)
    assert not failures, "\n".join(failures)


def test_all_six_2dtan_experiments_and_three_mmn_ones_are_in_the_table():
    codes = [TABLE["experiments"][n]["code"] for n in EXPERIMENTS]
    assert codes.count("2D-TAN") == 6 and codes.count("MMN") == 3


def test_tan_defaults_are_the_official_charades_pool_experiment():
    """MODEL.TAN's defaults (mmn/modeling/tan/config.py) are those of the official Charades-STA pool config."""
    from mmn.config import get_default_config

    cfg = get_default_config()
    code, merged = official_experiment("tan_pool_charades_16x16_k5l8", TABLE)
    checked = []
    for key, (official, source) in merged.items():
        rule = rule_for(code, key)
        if rule.kind == "same" and rule.ours and rule.ours.startswith("MODEL.TAN."):
            ours = normalise(our_value(cfg, rule.ours))
            assert ours == normalise(expected_value(code, key, rule, official, merged)), \
                f"default {rule.ours} = {ours!r}, official {key} = {official!r} (microsoft/2D-TAN {source})"
            checked.append(key)
    assert "DATASET.NORMALIZE" in checked and len(checked) >= 20
    for key, fact in hard_coded("tan_pool_charades_16x16_k5l8", TABLE).items():
        if key.startswith("MODEL.TAN.") and key != "MODEL.TAN.GLOVE":
            assert our_value(cfg, key) == fact["value"], key


def test_a_wrong_value_names_the_key_the_official_value_and_its_file(tmp_path):
    """The check fails on one changed value, naming it (and passes on the file as shipped)."""
    name = "tan_conv_charades_16x16_k5l8"
    text = open(os.path.join(CONFIGS_DIR, f"{name}.yaml")).read()
    assert "    NORMALIZE: True" in text
    broken = tmp_path / f"{name}.yaml"
    broken.write_text(text.replace("    NORMALIZE: True", "    NORMALIZE: False", 1))
    failures = check_config(name, config_path=str(broken))
    assert failures == [f"{name}: MODEL.TAN.NORMALIZE = False, official DATASET.NORMALIZE = True "
                        "(microsoft/2D-TAN experiments/charades/2D-TAN-16x16-K5L8-conv.yaml)"]


def test_a_runtime_difference_needs_its_ours_comment(tmp_path):
    name = "pool_tacos_128x128_k5l8"
    text = open(os.path.join(CONFIGS_DIR, f"{name}.yaml")).read()
    lines = [line.split("#")[0].rstrip() if "NUM_WORKERS" in line else line for line in text.splitlines()]
    broken = tmp_path / f"{name}.yaml"
    broken.write_text("\n".join(lines) + "\n")
    failures = check_config(name, config_path=str(broken))
    assert len(failures) == 1 and "DATALOADER.NUM_WORKERS" in failures[0] and "(ours)" in failures[0]


def test_an_unmapped_official_key_fails(tmp_path):
    table = load_table()
    table["experiments"]["tan_pool_charades_16x16_k5l8"]["values"]["TEST.NEW_KEY"] = 1
    table["defaults"]["2D-TAN"]["values"]["TEST.NEW_KEY"] = 0
    failures = check_config("tan_pool_charades_16x16_k5l8", table=table)
    assert len(failures) == 1 and "TEST.NEW_KEY" in failures[0] and "no rule" in failures[0]


# ---------------------------------------------------------------------------- the table against the sources
MIRROR_ROOT = os.environ.get("OFFICIAL_MIRRORS", "/work/.mirror")
MIRRORS = {"2D-TAN": os.path.join(MIRROR_ROOT, "microsoft+2D-TAN", "repo"),
           "MMN": os.path.join(MIRROR_ROOT, "MCG-NJU+MMN", "repo")}


def official_file(code, path):
    repo = MIRRORS[code]
    if not os.path.isdir(repo):
        pytest.skip(f"no mirror of the official {code} repository at {repo} (set OFFICIAL_MIRRORS)")
    commit = TABLE["repositories"][code]["commit"]
    result = subprocess.run(["git", "-C", repo, "show", f"{commit}:{path}"], capture_output=True, text=True)
    if result.returncode:
        pytest.skip(f"{repo}: {commit}:{path} not readable: {result.stderr.strip()}")
    return result.stdout


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_table_equals_the_official_experiment_file(name):
    exp = TABLE["experiments"][name]
    official = parse_official_yaml(official_file(exp["code"], exp["file"]))
    assert {k: normalise(v) for k, v in exp["values"].items()} == {k: normalise(v) for k, v in official.items()}


@pytest.mark.parametrize("code,prefix", [("2D-TAN", "config"), ("MMN", "_C")])
def test_table_equals_the_official_defaults(code, prefix):
    defaults = TABLE["defaults"][code]
    official = parse_python_defaults(official_file(code, defaults["file"]), prefix)
    assert {k: normalise(v) for k, v in defaults["values"].items()} == {k: normalise(v) for k, v in official.items()}


def test_2dtan_merge_follows_update_config():
    """A PARAMS node of the defaults (None) is replaced by the experiment's; unknown keys are refused."""
    merged = merge_2dtan({"LOSS.PARAMS": None, "TEST.NMS_THRESH": 0.4}, {"LOSS.PARAMS.MIN_IOU": 0.5})
    assert merged == {"LOSS.PARAMS.MIN_IOU": 0.5, "TEST.NMS_THRESH": 0.4}
    with pytest.raises(KeyError):
        merge_2dtan({"TEST.NMS_THRESH": 0.4}, {"TEST.NEW": 1})


FACTS = [(code, key, fact) for code, facts in TABLE["hard_coded"].items() for key, fact in facts.items()] + \
        [(TABLE["experiments"][n]["code"], key, fact) for n in EXPERIMENTS
         for key, fact in (TABLE["experiments"][n].get("hard_coded") or {}).items()]


@pytest.mark.parametrize("code,key,fact", FACTS, ids=[f"{c}-{k}-{f['file']}" for c, k, f in FACTS])
def test_hard_coded_fact_is_on_its_official_line(code, key, fact):
    lines = official_file(code, fact["file"]).splitlines()
    assert lines[fact["line"] - 1].strip() == fact["code"], f"{key}: {fact['file']}:{fact['line']}"
