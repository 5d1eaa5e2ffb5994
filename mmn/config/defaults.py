"""Default configuration of the keys every model shares.

Key names are those of the official MMN release, so its YAML files load unchanged. Keys that the
official code does not have are marked "(mmn)". Every model declares its own ``MODEL.<NAME>`` node (and
any key outside it that only it reads) in its own folder (``register_model_config``); this module
imports no model, so a full config needs the models imported first (``import mmn.modeling``).
"""
from yacs.config import CfgNode as CN

_C = CN()

_C.MODEL = CN()
_C.MODEL.DEVICE = "auto"  # (mmn) "auto": CUDA when available, else CPU; or any torch device string
_C.MODEL.ARCHITECTURE = "MMN"  # the official default; any name registered in the model registry
_C.MODEL.WEIGHT = ""
# (mmn) speed options; the defaults are the official behaviour
_C.MODEL.AMP = False             # bf16 autocast for forward passes (losses stay fp32); meant for CUDA
_C.MODEL.CHANNELS_LAST = False   # channels_last memory format for the 2D proposal convolutions
_C.MODEL.COMPILE = False         # torch.compile the model in place (parameter names unchanged)
# (mmn) BatchNorm statistics over the global batch of all processes (SyncBatchNorm semantics, also on CPU);
# False: each shard's own, as the official code (plain BatchNorm2d per GPU)
_C.MODEL.SYNC_BN = False

_C.INPUT = CN()
# (mmn) the extractor of the clip features when they come from video files (mmn-extract), recorded in the
# config of every checkpoint so that mmn-predict --video extracts exactly as the training features were;
# ENCODER "" means features made elsewhere (the benchmarks' VGG / C3D / I3D), which no video can reproduce
_C.INPUT.VIDEO = CN()
_C.INPUT.VIDEO.ENCODER = ""  # from_pretrained name or local directory of a CLIP model (mmn-extract --encoder)
_C.INPUT.VIDEO.FPS = 0.5     # frames sampled per second (mmn-extract --fps): one feature row per 1 / FPS s

_C.DATASETS = CN()
# used in best_<NAME>.pth; (mmn) derived from the splits' catalog entries when empty, checked against them when given
_C.DATASETS.NAME = ""
_C.DATASETS.TRAIN = ()
_C.DATASETS.TEST = ()
# (mmn) split that picks best_<NAME>.pth during training (e.g. ("activitynet_val",)); empty = the test
# split, as the official code does. The test split is still evaluated and logged either way.
_C.DATASETS.VAL = ()
_C.DATASETS.ROOT = "dataset"  # (mmn) root of the built-in catalog entries' relative paths
# (mmn) a YAML file of extra catalog entries (mmn/data/catalog.py): split -> {format, ann_file, feat_file[, feat_key,
# iou_thresholds, dataset]}, paths relative to that file
_C.DATASETS.CATALOG_FILE = ""

_C.DATALOADER = CN()
_C.DATALOADER.NUM_WORKERS = 4

_C.SOLVER = CN()
_C.SOLVER.MAX_EPOCH = 12
_C.SOLVER.LR = 0.01
_C.SOLVER.CHECKPOINT_PERIOD = 1
_C.SOLVER.KEEP_LAST = 0  # (mmn) keep only the newest N model_{epoch}e.pth (0: keep all); never best_*
_C.SOLVER.TEST_PERIOD = 1
_C.SOLVER.BATCH_SIZE = 32  # global batch (videos), split across processes
# (mmn) the global batch is split into this many shards whatever the number of processes (a multiple of it):
# each shard's losses and BatchNorm statistics come from that shard alone and the gradient is the mean over
# shards, exactly what DDP over NUM_SHARDS GPUs computes. 0: one shard per process (the official behaviour)
_C.SOLVER.NUM_SHARDS = 0
_C.SOLVER.MILESTONES = (8, 11)
_C.SOLVER.RESUME = False
_C.SOLVER.RESUME_EPOCH = 1  # read by the official configs, unused by its code (SOLVER.RESUME / --resume resume)
_C.SOLVER.SKIP_TEST = 0
_C.SOLVER.MAX_GRAD_NORM = 5.0  # (mmn) the official code hard-codes 5; <= 0: no clipping

_C.TEST = CN()
_C.TEST.BATCH_SIZE = 64
_C.TEST.NMS_THRESH = 0.5
# (mmn) the recall table: R@n for n in RECALLS (ranks above the moments a model returns are left out) at the IoU
# thresholds of the test split's catalog entry, or IOU_THRESHOLDS when given; STRICT_IOU: a hit needs IoU > m
# (as some official evaluations count) instead of >= m
_C.TEST.RECALLS = (1, 5)
_C.TEST.IOU_THRESHOLDS = ()
_C.TEST.STRICT_IOU = False
# (mmn) at each evaluation, also evaluate the training split (in order, at TEST.BATCH_SIZE) and log its recall
# table, as the official 2D-TAN does with its TEST.EVAL_TRAIN (True in 5 of its 6 experiments, False for TACoS
# conv); MMN's official code never does. Logging only: it changes no update and no checkpoint choice
_C.TEST.EVAL_TRAIN = False

_C.OUTPUT_DIR = "."
_C.SEED = 25285  # (mmn) seeds Python, numpy, torch and every loader worker


# what models declare in their own folders (register_model_config): MODEL.<NAME> nodes, and the keys
# outside them that only one model reads ("SECTION.KEY" -> (model, default))
_MODEL_NODES = {}
_MODEL_KEYS = {}


def register_model_config(name, node, keys=None):
    """Declare model ``name``'s config (called by the model's package when imported): its node ``MODEL.<name>``
    and ``keys``, {"SECTION.KEY": default} of keys outside that node that only this model reads, at the
    place its official release spells them (e.g. ``INPUT.NUM_PRE_CLIPS``), so that the release's YAML
    files load unchanged. A key that the shared defaults or another model already declare otherwise is an
    error."""
    if name in _C.MODEL or (name in _MODEL_NODES and _MODEL_NODES[name] is not node):
        raise KeyError(f"config node MODEL.{name} declared twice")
    for key, value in (keys or {}).items():
        if _shared_default(key) is not _MISSING:
            raise KeyError(f"{key} is a shared key of mmn/config/defaults.py; model {name} cannot declare it")
        owner = _MODEL_KEYS.get(key)
        if owner is not None and owner != (name, value):
            raise KeyError(f"{key} declared by models {owner[0]} and {name}")
    _MODEL_NODES[name] = node
    for key, value in (keys or {}).items():
        _MODEL_KEYS[key] = (name, value)


_MISSING = object()


def _shared_default(key):
    node = _C
    for part in key.split("."):
        if not isinstance(node, CN) or part not in node:
            return _MISSING
        node = node[part]
    return node


def registered_models():
    """The names of the models whose config is declared (every registered model's)."""
    return sorted(_MODEL_NODES)


def get_default_config():
    """A fresh copy of the defaults, with every declared model's node and keys (import ``mmn.modeling``
    first: importing a model declares them)."""
    cfg = _C.clone()
    for name, node in _MODEL_NODES.items():
        cfg.MODEL[name] = node.clone()
    for key, (_, value) in _MODEL_KEYS.items():
        *path, last = key.split(".")
        node = cfg
        for part in path:
            if part not in node:
                node[part] = CN()
            node = node[part]
        node[last] = value
    return cfg
