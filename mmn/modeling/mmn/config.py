"""MMN's config: its node MODEL.MMN and the keys of the official release that only MMN reads, at their
official places (INPUT.NUM_PRE_CLIPS, SOLVER.FREEZE_BERT, SOLVER.ONLY_IOU, TEST.CONTRASTIVE_SCORE_POW),
so that the release's YAML files load unchanged. Keys that the official code does not have are marked
"(mmn)"."""
from yacs.config import CfgNode as CN

from ...config.defaults import register_model_config

_MMN = CN()
_MMN.NUM_CLIPS = 128
_MMN.JOINT_SPACE_SIZE = 256

_MMN.FEATPOOL = CN()
_MMN.FEATPOOL.INPUT_SIZE = 4096
_MMN.FEATPOOL.HIDDEN_SIZE = 512
_MMN.FEATPOOL.KERNEL_SIZE = 2

_MMN.FEAT2D = CN()
_MMN.FEAT2D.NAME = "pool"
_MMN.FEAT2D.POOLING_COUNTS = [15, 8, 8, 8]

_MMN.TEXT_ENCODER = CN()
_MMN.TEXT_ENCODER.NAME = "BERT"  # read by the official configs, unused by its code (PRETRAINED names the model)
# (mmn) Hugging Face name or local directory given to from_pretrained (model and tokenizer)
_MMN.TEXT_ENCODER.PRETRAINED = "distilbert-base-uncased"

_MMN.PREDICTOR = CN()
_MMN.PREDICTOR.HIDDEN_SIZE = 512
_MMN.PREDICTOR.KERNEL_SIZE = 5
_MMN.PREDICTOR.NUM_STACK_LAYERS = 8
# (mmn) compute the proposal convs only over row bands that cover the cells with a non-zero mask
# weight; the other cells hold the conv bias exactly as in the dense convs (same math, fewer FLOPs).
# -1 = band height chosen per layer, N = bands of N rows, 0 = dense convs as in the official code.
_MMN.PREDICTOR.TILE_ROWS = -1

_MMN.LOSS = CN()
_MMN.LOSS.MIN_IOU = 0.3
_MMN.LOSS.MAX_IOU = 0.7
_MMN.LOSS.BCE_WEIGHT = 1  # in the official defaults, unused by its code
_MMN.LOSS.NUM_POSTIVE_VIDEO_PROPOSAL = 1
_MMN.LOSS.NEGATIVE_VIDEO_IOU = 0.5
_MMN.LOSS.SENT_REMOVAL_IOU = 0.5
_MMN.LOSS.PAIRWISE_SENT_WEIGHT = 0.0  # read by the official configs, unused by its code
_MMN.LOSS.CONTRASTIVE_WEIGHT = 0.05
_MMN.LOSS.TAU_VIDEO = 0.2
_MMN.LOSS.TAU_SENT = 0.2
_MMN.LOSS.MARGIN = 0.2
# (mmn) the losses over the whole global batch: the contrastive negatives come from every shard and process
# (gathered with their gradients), the means are over all its sentences; BatchNorm stays per shard unless
# MODEL.SYNC_BN. False: each shard's own losses (official)
_MMN.LOSS.GLOBAL_NEGATIVES = False

register_model_config("MMN", _MMN, keys={
    "INPUT.NUM_PRE_CLIPS": 256,           # raw clips resampled to this many (then pooled to NUM_CLIPS)
    "SOLVER.FREEZE_BERT": 4,              # the text encoder's BERT is frozen while epoch <= FREEZE_BERT
    "SOLVER.ONLY_IOU": 7,                 # the contrastive losses weigh 1 up to this epoch, then 0.01
    "TEST.CONTRASTIVE_SCORE_POW": 0.5,    # score fusion: ((contrastive + 1) / 2) ** POW x iou
    # (mmn) opt-in: a folder for .npy files (memory-mapped) of features already L2-normalised and resampled to
    # NUM_PRE_CLIPS, built once (rank 0) and reused while the source file is unchanged; "" reads the raw features
    "DATALOADER.FEATURE_CACHE_DIR": "",
})
