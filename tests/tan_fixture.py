"""A 2D-TAN parity fixture folder: tests/fixtures/tan_parity (see its README) or any folder of that form.

What the folder holds, and how it is read here:

- ``config.yaml``: the config in the official 2D-TAN YAML form, merged into the official defaults
  (``lib/core/config.py``, from tests/fixtures/official_configs.yaml) as ``update_config`` does, then
  mapped onto our keys by the one mapping of tests/official_configs.py. From it come the dataset and its
  layout, the splits (train, val unless ``DATASET.NO_VAL``, test), the batch sizes, the test interval in
  updates (``int(N / TRAIN.BATCH_SIZE x TEST.INTERVAL)``, ``train.py:172``), the starting weights
  (``MODEL.CHECKPOINT``).
- ``DATA_DIR`` in the official layout of ``DATASET.NAME``: Charades-STA ``charades_sta_{split}.txt`` +
  ``Charades_v1_{split}.csv`` (their JSON form ``charades_{split}.json`` is used when present, else made
  from the txt + csv with the official loader's rules) and ``{VIS_INPUT_TYPE}_features.hdf5``;
  ActivityNet ``{split}.json`` + ``sub_activitynet_v1-3.c3d.hdf5`` (group ``c3d_features``); TACoS
  ``{split}.json`` + ``tall_c3d_features.hdf5``.
- ``glove_stub.txt`` (the word vectors), ``tan_expected.pt`` (the official outputs).

``replay`` runs our implementation through what the official train.py did on the fixture (the recorded
batches of each update, the evaluations at the test interval, the scheduler stepped on the validation
loss) and returns the record in the form of ``tan_expected.pt``; tests/tan_parity_report.py compares the
two. Imported by the tests/test_tan_*.py files (the module-level names are those of the default fixture).
"""
import csv
import json
import os
import tempfile
import types

import torch

from mmn.config import get_default_config
from mmn.engine import run_step
from official_configs import load_table, merge_2dtan, parse_official_yaml, rule_for, set_value, unflatten

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_DIR = os.path.join(HERE, "fixtures", "tan_parity")
TOL = 1e-5

# DATASET.NAME -> (our annotation format, annotation file, feature file, HDF5 key) in the official layout
LAYOUTS = {
    "Charades": ("charades", "charades_{split}.json", "{vis}_features.hdf5", None),
    "ActivityNet": ("activitynet", "{split}.json", "sub_activitynet_v1-3.c3d.hdf5", "c3d_features"),
    "TACoS": ("tacos", "{split}.json", "tall_c3d_features.hdf5", None),
}


def official_charades(data_dir, split):
    """The official Charades loader's annotations (``charades.py:32-49``) from the txt + csv pair:
    [(video, [start, end], sentence, duration)] in file order."""
    durations = {}
    with open(os.path.join(data_dir, f"Charades_v1_{split}.csv")) as f:
        for row in csv.DictReader(f):
            durations[row["id"]] = float(row["length"])
    items = []
    with open(os.path.join(data_dir, f"charades_sta_{split}.txt")) as f:
        for line in f:
            anno, sentence = line.split("##")
            sentence = sentence.split(".\n")[0]
            vid, start, end = anno.split(" ")
            duration = durations[vid]
            start, end = float(start), min(float(end), duration)
            if start < end:
                items.append((vid, [start, end], sentence, duration))
    return items


def charades_txt_to_json(data_dir, split, out_path):
    """The official txt + csv annotations in our JSON form (grouped by video; the tokens are those of the
    official loader: one final "." is appended because ``official_tokens`` drops one for Charades)."""
    videos = {}
    for vid, times, sentence, duration in official_charades(data_dir, split):
        v = videos.setdefault(vid, {"duration": duration, "timestamps": [], "sentences": []})
        v["timestamps"].append(times)
        v["sentences"].append(sentence + ".")
    with open(out_path, "w") as f:
        json.dump(videos, f)
    return out_path


def official_to_cfg(official, glove=None, **extra):
    """A frozen framework config with the values of the official 2D-TAN config dict ``official`` (nested, as
    ``update_config`` leaves it), through the key mapping of tests/official_configs.py, plus the values the
    official code hard-codes; ``glove``: the word vectors (default: the default fixture's stub); ``extra``:
    {dotted key: value} set last."""
    cfg = get_default_config()
    cfg.defrost()
    cfg.MODEL.ARCHITECTURE = "TAN"
    cfg.MODEL.DEVICE = "cpu"
    flat = {}
    for key, value in _flat(official).items():
        rule = rule_for("2D-TAN", key)
        if rule is not None and rule.kind in ("same", "runtime") and rule.settable and rule.ours:
            set_value(cfg, rule.ours, rule.convert(value))
        flat[key] = value
    if "TAN.PROP_MODULE.PARAMS.HIDDEN_SIZE" not in flat:  # SparsePropMaxPool has none; ours must be consistent
        cfg.MODEL.TAN.PROP_MODULE.HIDDEN_SIZE = cfg.MODEL.TAN.FRAME_MODULE.HIDDEN_SIZE
    for key, fact in load_table()["hard_coded"]["2D-TAN"].items():  # the values the official code fixes
        if key != "MODEL.TAN.GLOVE":
            set_value(cfg, key, float(fact["value"]) if isinstance(cfg_value(cfg, key), float) else fact["value"])
    cfg.DATALOADER.NUM_WORKERS = 0  # the fixture's loaders run in this process
    cfg.MODEL.TAN.GLOVE = glove or os.path.join(DEFAULT_DIR, "glove_stub.txt")
    for key, value in extra.items():
        set_value(cfg, key, value)
    if cfg.DATASETS.TRAIN or cfg.DATASETS.TEST:
        from mmn.config.loading import check_config

        cfg.DATASETS.NAME = ""
        check_config(cfg)
    cfg.freeze()
    return cfg


def cfg_value(cfg, dotted):
    node = cfg
    for part in dotted.split("."):
        node = node[part]
    return node


def _flat(tree, prefix=""):
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


class TanFixture:
    """One fixture folder (see the module docstring)."""

    def __init__(self, folder=DEFAULT_DIR):
        self.folder = os.path.abspath(folder)
        config_path = os.path.join(self.folder, "config.yaml")
        if not os.path.isfile(config_path):
            raise FileNotFoundError(f"{config_path}: a 2D-TAN parity fixture holds its official config.yaml")
        with open(config_path) as f:
            self.config_yaml = f.read()
        defaults = load_table()["defaults"]["2D-TAN"]["values"]
        self.flat = merge_2dtan(defaults, parse_official_yaml(self.config_yaml))
        self.config = unflatten(self.flat)  # the official config dict, as update_config leaves it
        self.dataset = self.flat["DATASET.NAME"]
        if self.dataset not in LAYOUTS:
            raise ValueError(f"{config_path}: DATASET.NAME {self.dataset!r}; known layouts: {sorted(LAYOUTS)}")
        self.format, ann, feats, self.feat_key = LAYOUTS[self.dataset]
        self.data_dir = os.path.normpath(os.path.join(self.folder, self.flat["DATA_DIR"]))
        self.feat_file = os.path.join(self.data_dir, feats.format(vis=self.flat["DATASET.VIS_INPUT_TYPE"]))
        self._ann = ann
        self.splits = ("train",) + (() if self.flat["DATASET.NO_VAL"] else ("val",)) + ("test",)
        self.train_batch = int(self.flat["TRAIN.BATCH_SIZE"])
        self.test_batch = int(self.flat["TEST.BATCH_SIZE"])
        self.eval_train = bool(self.flat["TEST.EVAL_TRAIN"])
        self.tious = tuple(float(t) for t in str(self.flat["TEST.TIOU"]).split(","))
        self.recalls = tuple(int(r) for r in str(self.flat["TEST.RECALL"]).split(","))
        self.glove = os.path.join(self.folder, "glove_stub.txt")
        self.checkpoint = os.path.join(self.folder, self.flat["MODEL.CHECKPOINT"])
        self.expected_path = os.path.join(self.folder, "tan_expected.pt")
        self._converted = None

    # ------------------------------------------------------------------ files
    def ann_file(self, split):
        path = os.path.join(self.data_dir, self._ann.format(split=split))
        if self.format == "charades" and not os.path.isfile(path):
            if self._converted is None:
                self._converted = tempfile.mkdtemp(prefix="tan_fixture_")
            path = os.path.join(self._converted, f"charades_{split}.json")
            if not os.path.isfile(path):
                charades_txt_to_json(self.data_dir, split, path)
        return path

    def entry(self, split):
        """A catalog-like entry of the fixture's ``split`` (absolute paths)."""
        return types.SimpleNamespace(name=f"{self.format}_{split}", format=self.format, ann_file=self.ann_file(split),
                                     feat_file=self.feat_file, feat_key=self.feat_key, iou_thresholds=self.tious,
                                     dataset=self.format)

    def write_catalog(self, folder):
        """A DATASETS.CATALOG_FILE naming the fixture's splits ``tanfx_{split}``; without a validation split,
        ``tanfx_val`` is the test split (so that the validation-loss schedule can run)."""
        import yaml

        splits = {s: s for s in self.splits}
        splits.setdefault("val", "test")
        entries = {f"tanfx_{name}": {"format": self.format, "ann_file": self.ann_file(split), "feat_file": self.feat_file,
                                     "iou_thresholds": list(self.tious), **({"feat_key": self.feat_key} if self.feat_key else {})}
                   for name, split in splits.items()}
        path = os.path.join(str(folder), "tan_catalog.yaml")
        with open(path, "w") as f:
            yaml.safe_dump(entries, f)
        return path

    def load_expected(self):
        return torch.load(self.expected_path, map_location="cpu", weights_only=True)

    def cfg(self, **extra):
        return official_to_cfg(self.config, glove=self.glove, **extra)

    def build_model(self, cfg, state=None):
        from mmn.modeling import build_model as build
        from mmn.utils.checkpoint import load_model_weights

        torch.manual_seed(0)
        model = build(cfg)
        load_model_weights(model, state if state is not None else self.checkpoint)
        return model

    def datasets(self, cfg):
        from mmn.modeling.tan import TAN

        return {s: TAN.build_dataset(cfg, self.entry(s), is_train=s == "train") for s in self.splits}

    def test_interval(self, num_train):
        """``train.py:172``: evaluate every int(N / TRAIN.BATCH_SIZE x TEST.INTERVAL) updates."""
        return int(num_train / self.train_batch * self.flat["TEST.INTERVAL"])


def official_order(dataset, records):
    """Our dataset index of each official query (``records``: the fixture's per-query ``data`` entries, in
    the official order): the same video, times and tokens. Our JSON order groups queries by video."""
    free = {}
    for k in range(len(dataset)):
        key = (dataset.vids[k], tuple(dataset.moments[k].tolist()), tuple(dataset.tokens[k]))
        free.setdefault(key, []).append(k)
    order = []
    for r in records:
        key = (r["video"], tuple(float(t) for t in r["times"]), tuple(r["tokens"]))
        if not free.get(key):
            raise KeyError(f"official query {r.get('anno_idx')} ({r['video']} {r['times']} {' '.join(r['tokens'])!r}) "
                           "is not among ours")
        order.append(free[key].pop(0))
    return order


# ---------------------------------------------------------------------------- our side of the record
def item_record(dataset, k):
    item = dataset[k]
    return {"video": dataset.vids[k], "times": dataset.moments[k].tolist(), "tokens": list(dataset.tokens[k]),
            "duration": item["duration"], "visual_input": item["visual_input"], "word_vectors": item["word_vectors"],
            "txt_mask": torch.ones(len(item["word_vectors"]), 1), "map_gt": item["map_gt"]}


def batch_record(batch, anno_idxs):
    """A collated batch in the official ``collate_fn``'s names."""
    return {"anno_idxs": list(anno_idxs), "word_vectors": batch.word_vectors, "txt_mask": batch.txt_mask,
            "map_gt": batch.map_gt, "vis_input": batch.vis_input, "duration": batch.durations.tolist()}


def summarize(split, joint_prob, durations, moments, loss, fx, cfg):
    """An evaluation in the fixture's ``summary`` form (rankings, NMS, recall table, loss)."""
    from mmn.evaluation import recall_table
    from mmn.modeling.tan.ranking import rank_candidates, top_moments

    times, scores, _ = rank_candidates(joint_prob, durations)
    top, _ = top_moments(joint_prob, durations, cfg.TEST.NMS_THRESH, k=max(fx.recalls))
    table = recall_table(top, moments, fx.tious, fx.recalls, strict=True)
    return {"split": split, "tious": list(fx.tious), "recalls": list(fx.recalls), "loss": loss,
            "table": torch.tensor([[table[f"R@{r},IoU@{t:.1f}"] for r in fx.recalls] for t in fx.tious],
                                  dtype=torch.float64),
            "miou": table["mIoU"], "sorted_times": times.double(), "n_scored": (scores > 0).sum(1).tolist(),
            "top_moments": [m[~torch.isnan(m[:, 0])] for m in top]}


@torch.no_grad()
def evaluate(model, dataset, order, fx, cfg, split, batch_size):
    """train.py's evaluation of a split: eval mode, the official query order in batches of ``batch_size``,
    the loss the mean of the batch losses."""
    was_training = model.training
    model.eval()
    probs, losses = [], []
    for s in range(0, len(order), batch_size):
        out = model(dataset.collator()([dataset[k] for k in order[s:s + batch_size]]))
        probs.append(out["joint_prob"])
        losses.append(out["loss"].item())
    model.train(was_training)
    idx = torch.tensor(order)
    return summarize(split, torch.cat(probs), dataset.query_durations()[idx], dataset.query_moments()[idx],
                     sum(losses) / len(losses), fx, cfg)


def replay(fx, batches, orders, cfg=None):
    """Our run of what the official train.py does on the fixture: the starting model's evaluation of the test
    split as one batch (with every intermediate), then one update per batch of ``batches`` (official query
    indices of the train split), evaluating at the test interval (train split if EVAL_TRAIN; val split then
    the scheduler stepped on its loss; test split). ``orders``: {split: our index of each official query}.
    Returns the record in the form of tan_expected.pt (``data``, ``eval``, ``grads_step1``, ``steps``)."""
    import copy

    cfg = cfg or fx.cfg()
    datasets = fx.datasets(cfg)
    record = {"data": {s: [item_record(datasets[s], k) for k in orders[s]] for s in fx.splits}}

    test, order = datasets["test"], orders["test"]
    model = fx.build_model(cfg).eval()
    batch = test.collator()([test[k] for k in order])
    with torch.no_grad():
        out, final = model.forward_outputs(batch), model(batch)
    idx = torch.tensor(order)
    record["eval"] = {**{k: v for k, v in out.items() if k != "map_conv_layers"},
                      "map_conv_layers": [{"conv_out": y, "masked_weight": w.expand(len(order), *w.shape)[:, None],
                                           "padded_mask": (w > 0).expand(len(order), *w.shape)[:, None]}
                                          for y, w in zip(out["map_conv_layers"], model.map_layer.masked_weights())],
                      "batch": batch_record(batch, range(len(order))), "loss": final["loss"].item(),
                      "joint_prob": final["joint_prob"][:, None],
                      "summary": summarize("test", final["joint_prob"], test.query_durations()[idx],
                                           test.query_moments()[idx], final["loss"].item(), fx, cfg)}

    model = fx.build_model(cfg).train()
    optimizer, scheduler = model.build_optimizer(cfg)
    train = datasets["train"]
    interval = fx.test_interval(len(train))
    steps = []
    for t, anno_idxs in enumerate(batches, start=1):
        b = train.collator()([train[orders["train"][k]] for k in anno_idxs])
        probe = copy.deepcopy(model)  # the update's gradients before clipping, from a copy
        probe(b)["loss"].backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(probe.parameters(), float("inf")).item()
        if t == 1:
            record["grads_step1"] = {n: p.grad.clone() for n, p in probe.named_parameters()}
        lr = [g["lr"] for g in optimizer.param_groups]
        result = run_step(model, b, optimizer, 1)
        evals = []
        if interval > 0 and t % interval == 0:
            if fx.eval_train:
                evals.append(evaluate(model, train, orders["train"], fx, cfg, "train", fx.test_batch))
            if "val" in datasets:
                evals.append(evaluate(model, datasets["val"], orders["val"], fx, cfg, "val", fx.test_batch))
                model.end_epoch(scheduler, {"val": {"loss": evals[-1]["loss"]}})  # step(-val loss), train.py:200
            evals.append(evaluate(model, test, orders["test"], fx, cfg, "test", fx.test_batch))
        steps.append({"t": t, "anno_idxs": list(anno_idxs), "batch": batch_record(b, anno_idxs), "loss": result["loss"],
                      "grad_norm": grad_norm, "lr": lr, "lr_next": [g["lr"] for g in optimizer.param_groups],
                      "scheduler": {k: v for k, v in scheduler.state_dict().items()
                                    if k in ("best", "num_bad_epochs", "last_epoch", "cooldown_counter")},
                      "state": {n: v.clone() for n, v in model.state_dict().items()}, "evals": evals})
    record["steps"] = steps
    record["test_interval"] = interval
    return record


def expected_orders(fx, expected, cfg=None):
    """{split: our index of each official query} for the fixture's recorded ``data``."""
    datasets = fx.datasets(cfg or fx.cfg())
    return {s: official_order(datasets[s], expected["data"][s]) for s in fx.splits}


# ---------------------------------------------------------------------------- the default fixture's names
DEFAULT = TanFixture(DEFAULT_DIR)
FIXTURE_DIR = DEFAULT.folder
DATA_DIR = DEFAULT.data_dir
EXPECTED = DEFAULT.expected_path
CHECKPOINT = DEFAULT.checkpoint
GLOVE = DEFAULT.glove


def load_expected():
    return DEFAULT.load_expected()


def write_catalog(folder):
    return DEFAULT.write_catalog(folder)


def entry(split):
    return DEFAULT.entry(split)


def build_model(cfg, state=None):
    return DEFAULT.build_model(cfg, state)
