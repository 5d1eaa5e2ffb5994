"""The official experiments' values (tests/fixtures/official_configs.yaml) and how each official key maps
onto ours. One place for that mapping: tests/test_official_configs.py checks the shipped configs with it,
tests/tan_fixture.py builds a framework config from a 2D-TAN parity fixture's official config with it.

The table holds facts copied from the official repositories (microsoft/2D-TAN, MCG-NJU/MMN), each with
its file: every key of each official experiment YAML, every key of the defaults file the experiments are
merged into (2D-TAN: ``lib/core/config.py`` via ``update_config``; MMN: ``mmn/config/defaults.py`` via
yacs), and values the official code hard-codes (named by our key, with file and line).
"""
import ast
import os
import re
from dataclasses import dataclass
from typing import Callable, Optional

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
TABLE = os.path.join(HERE, "fixtures", "official_configs.yaml")
REPO_ROOT = os.path.dirname(HERE)
CONFIGS_DIR = os.path.join(REPO_ROOT, "configs")

# the marker of a deliberate run-time difference on a shipped YAML line (or the comment block above it)
OURS_MARKER = "(ours)"


def load_table(path=TABLE):
    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f)


# ---------------------------------------------------------------------------- flat official configs
def flatten(tree, prefix=""):
    """{"A": {"B": 1}} -> {"A.B": 1}; lists and scalars are values."""
    out = {}
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, dotted + "."))
        else:
            out[dotted] = value
    return out


def unflatten(flat):
    tree = {}
    for dotted, value in flat.items():
        node = tree
        *path, last = dotted.split(".")
        for part in path:
            node = node.setdefault(part, {})
        node[last] = value
    return tree


def merge_2dtan(defaults, experiment):
    """``lib/core/config.py``'s ``update_config``: every key must exist in the defaults, and a ``PARAMS``
    node is replaced as a whole (``_update_dict``: ``if k == 'PARAMS': cfg[k] = v``)."""
    merged = dict(defaults)
    for key, value in experiment.items():
        if ".PARAMS." in key:
            node = key.split(".PARAMS.")[0] + ".PARAMS"
            if node not in defaults:
                raise KeyError(f"{key}: {node} not in the 2D-TAN defaults")
            merged.pop(node, None)
        elif key not in defaults:
            raise KeyError(f"{key} not in the 2D-TAN defaults")
        merged[key] = value
    return merged


def merge_mmn(defaults, experiment):
    """yacs ``merge_from_file``: every key must exist in the defaults."""
    unknown = sorted(set(experiment) - set(defaults))
    if unknown:
        raise KeyError(f"{unknown} not in the MMN defaults")
    return {**defaults, **experiment}


def official_experiment(name, table=None):
    """(code, {official key: (value, source file)}) of experiment ``name``: the defaults file merged with
    the experiment file, each value with the file it comes from."""
    table = table or load_table()
    exp = table["experiments"][name]
    code = exp["code"]
    defaults = table["defaults"][code]
    merge = merge_2dtan if code == "2D-TAN" else merge_mmn
    merged = merge(defaults["values"], exp["values"])
    return code, {k: (v, exp["file"] if k in exp["values"] else defaults["file"]) for k, v in merged.items()}


def hard_coded(name, table=None):
    """{our key: fact} of experiment ``name``: its code's facts, then the experiment's own."""
    table = table or load_table()
    exp = table["experiments"][name]
    return {**table["hard_coded"].get(exp["code"], {}), **(exp.get("hard_coded") or {})}


# ---------------------------------------------------------------------------- reading the official sources
def parse_python_defaults(text, prefix):
    """``prefix.A.B = <literal>`` lines of a defaults file -> {"A.B": value}, without running it: values
    are read with ``ast.literal_eval``; a non-literal (``edict()``, ``CN()``: a node) is skipped, any
    other non-literal expression is kept as its source text."""
    out = {}
    pattern = re.compile(rf"^{re.escape(prefix)}\.([A-Za-z_][\w.]*)\s*=\s*(.+?)\s*(#.*)?$")
    for line in text.splitlines():
        m = pattern.match(line)
        if not m:
            continue
        key, expr = m.group(1), m.group(2)
        if expr in ("edict()", "CN()"):
            continue
        try:
            out[key] = ast.literal_eval(expr)
        except (ValueError, SyntaxError):
            out[key] = expr
    return out


def parse_official_yaml(text):
    return flatten(yaml.safe_load(text) or {})


# ---------------------------------------------------------------------------- our side
def our_value(cfg, dotted):
    node = cfg
    for part in dotted.split("."):
        node = node[part]
    return node


def set_value(cfg, dotted, value):
    node = cfg
    *path, last = dotted.split(".")
    for part in path:
        node = node[part]
    node[last] = value


def normalise(value):
    """Lists and tuples compare equal (yacs keeps YAML lists, literal tuples stay tuples)."""
    if isinstance(value, (list, tuple)):
        return tuple(normalise(v) for v in value)
    return value


def yacs_literal(value):
    """A YAML string as yacs reads it (``MILESTONES: (7, 15)`` is the tuple (7, 15))."""
    if isinstance(value, str):
        try:
            return ast.literal_eval(value)
        except (ValueError, SyntaxError):
            return value
    return value


def csv_numbers(kind):
    """2D-TAN's ``TEST.RECALL: 1,5`` / ``TIOU: 0.5,0.7`` (``lib/core/eval.py:55-56``)."""
    def convert(value):
        if isinstance(value, str):
            return tuple(kind(v) for v in value.split(","))
        return tuple(kind(v) for v in (value if isinstance(value, (list, tuple)) else [value]))
    return convert


def effective_iou_thresholds(cfg):
    """The thresholds of the test split's recall table: TEST.IOU_THRESHOLDS, else the catalog entry's."""
    from mmn.data.catalog import get_entry
    from mmn.evaluation.recall import metric_spec

    return metric_spec(cfg, get_entry(cfg, cfg.DATASETS.TEST[0]))[0]


def feature_file_name(cfg):
    from mmn.data.catalog import get_entry

    return os.path.basename(get_entry(cfg, cfg.DATASETS.TRAIN[0]).feat_file)


# the official loaders' feature files (lib/datasets/{charades,activitynet,tacos}.py:92,121,87)
TAN_FEATURE_FILES = {"Charades": "{}_features.hdf5", "ActivityNet": "sub_activitynet_v1-3.c3d.hdf5",
                     "TACoS": "tall_c3d_features.hdf5"}


def tan_no_val(cfg):
    """NO_VAL True: no DATASETS.VAL. False: the dataset's own validation split (the official ``val.json``)."""
    val = tuple(cfg.DATASETS.VAL)
    if val and val != (f"{cfg.DATASETS.NAME}_val",):
        return f"DATASETS.VAL {val}, not {cfg.DATASETS.NAME}_val"
    return not val


@dataclass
class Rule:
    """How one official key is found in our config.

    kind: "same" (our value must equal the official one), "runtime" (may differ for a run-time reason: the
    YAML line then says ``# (ours)``), "differs" (a documented difference of meaning: the YAML line says
    ``# (ours)`` and the value must still be the official number), "n/a" (does not apply to us: ``why``).
    """
    kind: str
    ours: Optional[str] = None                  # our dotted key (None: none, ``get`` reads the value)
    convert: Callable = lambda v: v             # official value -> our representation
    get: Optional[Callable] = None              # cfg -> our value (default: the value of ``ours``)
    settable: bool = True                       # tan_fixture may set ``ours`` from the official value
    why: str = ""

    def describe(self):
        return self.ours or self.why

    def value(self, cfg):
        return self.get(cfg) if self.get else our_value(cfg, self.ours)


def same(ours, convert=lambda v: v, get=None, settable=True, why=""):
    return Rule("same", ours, convert, get, settable and get is None, why)


def builtin(value, why):
    """An official choice we implement in one way only: the official value must be ``value``."""
    return Rule("same", None, lambda v: v, lambda cfg: value, False, why)


def derived(get, convert=lambda v: v, why=""):
    """Checked through our config, but not a key of ours that can be set from the official value."""
    return Rule("same", None, convert, get, False, why)


def runtime(ours, why):
    return Rule("runtime", ours, why=why)


def differs(ours, why, convert=lambda v: v):
    return Rule("differs", ours, convert, None, False, why)


def not_applicable(why):
    return Rule("n/a", why=why)


OUTPUT_PATHS = not_applicable("an output path (ours: OUTPUT_DIR)")

TAN_RULES = {
    "WORKERS": runtime("DATALOADER.NUM_WORKERS", "loader processes: the data are the same with any number"),
    "LOG_DIR": OUTPUT_PATHS, "MODEL_DIR": OUTPUT_PATHS, "RESULT_DIR": OUTPUT_PATHS,
    "DATA_DIR": not_applicable("where the data lie (ours: DATASETS.ROOT and the catalog)"),
    "VERBOSE": not_applicable("progress bars"), "TAG": not_applicable("a log-file tag"),
    "CUDNN.BENCHMARK": not_applicable("cuDNN algorithm choice (run-time; torch's default)"),
    "CUDNN.DETERMINISTIC": not_applicable("cuDNN algorithm choice (run-time; torch's default)"),
    "CUDNN.ENABLED": not_applicable("cuDNN on/off (run-time; torch's default)"),
    "TAN.FRAME_MODULE.NAME": builtin("FrameAvgPool", "the only frame module (mmn/modeling/tan/frame.py)"),
    "TAN.PROP_MODULE.NAME": same("MODEL.TAN.PROP_MODULE.NAME"),
    "TAN.FUSION_MODULE.NAME": builtin("BaseFusion", "the only fusion module (mmn/modeling/tan/fusion.py)"),
    "TAN.MAP_MODULE.NAME": builtin("MapConv", "the only map module (mmn/modeling/tan/map_conv.py)"),
    "TAN.PRED_INPUT_SIZE": same("MODEL.TAN.PRED_INPUT_SIZE"),
    "MODEL.NAME": same("MODEL.ARCHITECTURE"),
    "MODEL.CHECKPOINT": not_applicable("read only with TRAIN.CONTINUE and by test.py (ours: MODEL.WEIGHT, --ckpt)"),
    "DATASET.NAME": same("DATASETS.NAME", convert=str.lower, settable=True),
    # the official loader's file name for this input type (expected_value), against the catalog entry's
    "DATASET.VIS_INPUT_TYPE": derived(feature_file_name, why="the catalog entry's feature file"),
    "DATASET.NO_VAL": derived(tan_no_val, why="DATASETS.VAL empty"),
    "DATASET.NUM_SAMPLE_CLIPS": same("MODEL.TAN.NUM_SAMPLE_CLIPS"),
    "DATASET.TARGET_STRIDE": same("MODEL.TAN.TARGET_STRIDE"),
    "DATASET.NORMALIZE": same("MODEL.TAN.NORMALIZE"),
    "DATASET.ROOT": not_applicable("unused by the official code"),
    "DATASET.MODALITY": not_applicable("unused by the official code"),
    "DATASET.BIAS": not_applicable("unused by the official code"),
    "DATASET.DOWNSAMPLING_STRIDE": not_applicable("unused by the official code"),
    "DATASET.SPLIT": not_applicable("unused by the official code"),
    "DATASET.RANDOM_SAMPLING": not_applicable("unused by the official code (the line reading it is commented "
                                              "out, lib/datasets/tacos.py:60)"),
    "TRAIN.LR": same("MODEL.TAN.SOLVER.LR"),
    "TRAIN.WEIGHT_DECAY": same("MODEL.TAN.SOLVER.WEIGHT_DECAY"),
    "TRAIN.FACTOR": same("MODEL.TAN.SOLVER.FACTOR"),
    "TRAIN.PATIENCE": same("MODEL.TAN.SOLVER.PATIENCE"),
    "TRAIN.MAX_EPOCH": same("SOLVER.MAX_EPOCH"),
    "TRAIN.BATCH_SIZE": same("SOLVER.BATCH_SIZE"),
    "TRAIN.SHUFFLE": builtin(True, "the training sampler always shuffles"),
    "TRAIN.CONTINUE": derived(lambda cfg: bool(cfg.MODEL.WEIGHT), why="MODEL.WEIGHT given"),
    "LOSS.NAME": builtin("bce_rescale_loss", "the only 2D-TAN loss (mmn/modeling/tan/loss.py)"),
    "TEST.RECALL": same("TEST.RECALLS", convert=csv_numbers(int)),
    # read through the recall table's own rule: TEST.IOU_THRESHOLDS, else the catalog entry's
    "TEST.TIOU": Rule("same", "TEST.IOU_THRESHOLDS", csv_numbers(float), effective_iou_thresholds, True),
    "TEST.NMS_THRESH": same("TEST.NMS_THRESH"),
    "TEST.BATCH_SIZE": same("TEST.BATCH_SIZE"),
    "TEST.EVAL_TRAIN": same("TEST.EVAL_TRAIN"),
    "TEST.INTERVAL": differs("SOLVER.TEST_PERIOD", "official: every int(N / B x INTERVAL) updates; ours: every "
                                                   "TEST_PERIOD epochs"),
    "TEST.TOP_K": not_applicable("unused by the official code"),
}
TAN_PREFIX_RULES = {  # official prefix -> our prefix (the keys below them are the same names)
    "TAN.FRAME_MODULE.PARAMS.": "MODEL.TAN.FRAME_MODULE.",
    "TAN.PROP_MODULE.PARAMS.": "MODEL.TAN.PROP_MODULE.",
    "TAN.FUSION_MODULE.PARAMS.": "MODEL.TAN.FUSION_MODULE.",
    "TAN.MAP_MODULE.PARAMS.": "MODEL.TAN.MAP_MODULE.",
    "LOSS.PARAMS.": "MODEL.TAN.LOSS.",
}

MMN_RULES = {
    "MODEL.DEVICE": runtime("MODEL.DEVICE", "the device: auto runs on CUDA when present, as the official cuda"),
    "DATALOADER.NUM_WORKERS": runtime("DATALOADER.NUM_WORKERS", "loader processes: the data are the same"),
    "PATHS_CATALOG": not_applicable("the official paths file (ours: mmn/data/catalog.py and DATASETS.ROOT)"),
    "OUTPUT_DIR": OUTPUT_PATHS,
}


def rule_for(code, key):
    """The Rule of official ``key`` of ``code`` ("2D-TAN" or "MMN"); None when there is none."""
    if code == "MMN":
        return MMN_RULES.get(key) or same(key, convert=yacs_literal)
    if key in TAN_RULES:
        return TAN_RULES[key]
    for official, ours in TAN_PREFIX_RULES.items():
        if key.startswith(official):
            return same(ours + key[len(official):])
    return None


def expected_value(code, key, rule, official, merged):
    """The official value of ``key`` in our representation."""
    if code == "2D-TAN" and key == "DATASET.VIS_INPUT_TYPE":
        name = merged["DATASET.NAME"][0]
        return TAN_FEATURE_FILES[name].format(official)
    return rule.convert(official)


# hard-coded facts whose key is read through a rule of ours rather than as the plain value
HARD_CODED_GETTERS = {
    "TEST.IOU_THRESHOLDS": effective_iou_thresholds,               # the recall table's thresholds
    "MODEL.TAN.GLOVE": lambda cfg: os.path.basename(cfg.MODEL.TAN.GLOVE),  # the file, wherever it lies
}


# ---------------------------------------------------------------------------- YAML comments
def yaml_comments(path):
    """{dotted key: its comment text} of a YAML file: the comment after the key on its line plus the
    comment lines directly above it (a key's own comment block)."""
    comments, stack, pending = {}, [], []
    with open(path, encoding="utf-8") as f:
        for line in f:
            stripped = line.strip()
            if stripped.startswith("#"):
                pending.append(stripped)
                continue
            m = re.match(r"^(\s*)([A-Za-z_]\w*)\s*:(.*)$", line.rstrip("\n"))
            if not m:
                pending = []
                continue
            indent, key, rest = len(m.group(1)), m.group(2), m.group(3)
            while stack and stack[-1][0] >= indent:
                stack.pop()
            stack.append((indent, key))
            inline = rest.split("#", 1)[1] if "#" in rest else ""
            comments[".".join(k for _, k in stack)] = " ".join(pending + [inline]).strip()
            pending = []
    return comments


# ---------------------------------------------------------------------------- the check
def check_config(name, cfg=None, config_path=None, table=None):
    """Every official key of experiment ``name`` against our config ``cfg`` (default: configs/<name>.yaml
    through our loader). Returns the list of failures (empty when all agree), each naming our key, our
    value, the official key, its value and its source file."""
    from mmn.config import load_config

    table = table or load_table()
    config_path = config_path or os.path.join(CONFIGS_DIR, f"{name}.yaml")
    cfg = cfg if cfg is not None else load_config(config_path)
    comments = yaml_comments(config_path)
    code, merged = official_experiment(name, table)
    repo = table["repositories"][code]["repo"]
    failures = []

    def where(file):
        return f"{repo} {file}"

    for key, (official, source) in sorted(merged.items()):
        rule = rule_for(code, key)
        if rule is None:
            failures.append(f"official {key} = {official!r} ({where(source)}) has no rule in tests/official_configs.py: "
                            "map it onto our key or say why it does not apply")
            continue
        if rule.kind == "n/a":
            continue
        ours = normalise(rule.value(cfg))
        wanted = normalise(expected_value(code, key, rule, official, merged))
        marked = rule.ours is not None and OURS_MARKER in comments.get(rule.ours, "")
        label = f"{name}: {rule.describe()} = {ours!r}"
        if rule.kind == "runtime":
            if ours != wanted and not marked:
                failures.append(f"{label}, official {key} = {official!r} ({where(source)}): a run-time difference "
                                f"must be set in the YAML with a '# {OURS_MARKER} why' comment")
        elif rule.kind == "differs":
            if ours != wanted:
                failures.append(f"{label}, official {key} = {official!r} ({where(source)})")
            if not marked:
                failures.append(f"{label}: differs in meaning from official {key} ({rule.why}): its YAML line must "
                                f"say '# {OURS_MARKER} ...'")
        elif ours != wanted:
            failures.append(f"{label}, official {key} = {official!r} ({where(source)})")
    for key, fact in sorted(hard_coded(name, table).items()):
        ours = normalise(HARD_CODED_GETTERS.get(key, lambda c: our_value(c, key))(cfg))
        if ours != normalise(fact["value"]):
            failures.append(f"{name}: {key} = {ours!r}, official {fact['value']!r} "
                            f"({where(fact['file'])}:{fact['line']}: {fact['code']})")
    return failures
