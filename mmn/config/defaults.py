"""Default configuration.

Key names are those of the official MMN release, so its YAML files load unchanged. Keys that the
official code does not have are marked "(mmn)". The framework's keys and MMN's (the official base) live
here; every other model declares its ``MODEL.<NAME>`` node in its own folder (``register_model_config``).
"""
from yacs.config import CfgNode as CN

_C = CN()

_C.MODEL = CN()
_C.MODEL.DEVICE = "auto"  # (mmn) "auto": CUDA when available, else CPU; or any torch device string
_C.MODEL.ARCHITECTURE = "MMN"
_C.MODEL.WEIGHT = ""
# (mmn) speed options; the defaults are the official behaviour
_C.MODEL.AMP = False             # bf16 autocast for forward passes (losses stay fp32); meant for CUDA
_C.MODEL.CHANNELS_LAST = False   # channels_last memory format for the 2D proposal convolutions
_C.MODEL.COMPILE = False         # torch.compile the model in place (parameter names unchanged)
# (mmn) BatchNorm statistics over the global batch of all processes (SyncBatchNorm semantics, also on CPU);
# False: each shard's own, as the official code (plain BatchNorm2d per GPU)
_C.MODEL.SYNC_BN = False

_C.INPUT = CN()
_C.INPUT.NUM_PRE_CLIPS = 256
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
_C.DATALOADER.SIZE_DIVISIBILITY = 0
# (mmn) opt-in: a folder for .npy files (memory-mapped) of features already L2-normalised and resampled to
# NUM_PRE_CLIPS, built once (rank 0) and reused while the source file is unchanged; "" reads the raw features
_C.DATALOADER.FEATURE_CACHE_DIR = ""

_C.MODEL.MMN = CN()
_C.MODEL.MMN.NUM_CLIPS = 128
_C.MODEL.MMN.JOINT_SPACE_SIZE = 256

_C.MODEL.MMN.FEATPOOL = CN()
_C.MODEL.MMN.FEATPOOL.INPUT_SIZE = 4096
_C.MODEL.MMN.FEATPOOL.HIDDEN_SIZE = 512
_C.MODEL.MMN.FEATPOOL.KERNEL_SIZE = 2

_C.MODEL.MMN.FEAT2D = CN()
_C.MODEL.MMN.FEAT2D.NAME = "pool"
_C.MODEL.MMN.FEAT2D.POOLING_COUNTS = [15, 8, 8, 8]

_C.MODEL.MMN.TEXT_ENCODER = CN()
_C.MODEL.MMN.TEXT_ENCODER.NAME = "BERT"
# (mmn) Hugging Face name or local directory given to from_pretrained (model and tokenizer)
_C.MODEL.MMN.TEXT_ENCODER.PRETRAINED = "distilbert-base-uncased"

_C.MODEL.MMN.PREDICTOR = CN()
_C.MODEL.MMN.PREDICTOR.HIDDEN_SIZE = 512
_C.MODEL.MMN.PREDICTOR.KERNEL_SIZE = 5
_C.MODEL.MMN.PREDICTOR.NUM_STACK_LAYERS = 8
# (mmn) compute the proposal convs only over row bands that cover the cells with a non-zero mask
# weight; the other cells hold the conv bias exactly as in the dense convs (same math, fewer FLOPs).
# -1 = band height chosen per layer, N = bands of N rows, 0 = dense convs as in the official code.
_C.MODEL.MMN.PREDICTOR.TILE_ROWS = -1

_C.MODEL.MMN.LOSS = CN()
_C.MODEL.MMN.LOSS.MIN_IOU = 0.3
_C.MODEL.MMN.LOSS.MAX_IOU = 0.7
_C.MODEL.MMN.LOSS.BCE_WEIGHT = 1
_C.MODEL.MMN.LOSS.NUM_POSTIVE_VIDEO_PROPOSAL = 1
_C.MODEL.MMN.LOSS.NEGATIVE_VIDEO_IOU = 0.5
_C.MODEL.MMN.LOSS.SENT_REMOVAL_IOU = 0.5
_C.MODEL.MMN.LOSS.PAIRWISE_SENT_WEIGHT = 0.0  # read by the official configs, unused by its code
_C.MODEL.MMN.LOSS.CONTRASTIVE_WEIGHT = 0.05
_C.MODEL.MMN.LOSS.TAU_VIDEO = 0.2
_C.MODEL.MMN.LOSS.TAU_SENT = 0.2
_C.MODEL.MMN.LOSS.MARGIN = 0.2
# (mmn) the losses over the whole global batch: the contrastive negatives come from every shard and process
# (gathered with their gradients), the means are over all its sentences; BatchNorm stays per shard unless
# MODEL.SYNC_BN. False: each shard's own losses (official)
_C.MODEL.MMN.LOSS.GLOBAL_NEGATIVES = False


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
_C.SOLVER.RESUME_EPOCH = 1
_C.SOLVER.FREEZE_BERT = 4
_C.SOLVER.ONLY_IOU = 7
_C.SOLVER.SKIP_TEST = 0
_C.SOLVER.MAX_GRAD_NORM = 5.0  # (mmn) the official code hard-codes 5

_C.TEST = CN()
_C.TEST.BATCH_SIZE = 64
_C.TEST.NMS_THRESH = 0.5
_C.TEST.CONTRASTIVE_SCORE_POW = 0.5
# (mmn) the recall table: R@n for n in RECALLS (ranks above the moments a model returns are left out) at the IoU
# thresholds of the test split's catalog entry, or IOU_THRESHOLDS when given; STRICT_IOU: a hit needs IoU > m
# (2D-TAN's eval.py) instead of >= m (MMN's)
_C.TEST.RECALLS = (1, 5)
_C.TEST.IOU_THRESHOLDS = ()
_C.TEST.STRICT_IOU = False
# (mmn) at each evaluation, also evaluate the training split (in order, at TEST.BATCH_SIZE) and log its recall
# table, as the official 2D-TAN does with its TEST.EVAL_TRAIN (True in 5 of its 6 experiments, False for TACoS
# conv); MMN's official code never does. Logging only: it changes no update and no checkpoint choice
_C.TEST.EVAL_TRAIN = False

_C.OUTPUT_DIR = "."
_C.SEED = 25285  # (mmn) seeds Python, numpy, torch and every loader worker


# MODEL.<NAME> nodes that models declare in their own folders (register_model_config)
_MODEL_NODES = {}


def register_model_config(name, node):
    """Declare a model's own config node ``MODEL.<name>`` (called by the model's package when imported)."""
    if name in _C.MODEL or (name in _MODEL_NODES and _MODEL_NODES[name] is not node):
        raise KeyError(f"config node MODEL.{name} declared twice")
    _MODEL_NODES[name] = node


def get_default_config():
    """A fresh copy of the defaults, with every registered model's node."""
    from .. import modeling  # noqa: F401  (importing the models declares their nodes)

    cfg = _C.clone()
    for name, node in _MODEL_NODES.items():
        cfg.MODEL[name] = node.clone()
    return cfg
