"""2D-TAN's config node, MODEL.TAN (docs/TAN.md): the official key names, the values of its Charades-STA pool
config (experiments/charades/2D-TAN-16x16-K5L8-pool.yaml of microsoft/2D-TAN); the GloVe width is 300."""
from yacs.config import CfgNode as CN

from ...config.defaults import register_model_config

_TAN = CN()
_TAN.NUM_SAMPLE_CLIPS = 256      # DATASET.NUM_SAMPLE_CLIPS: raw clips resampled to this many
_TAN.TARGET_STRIDE = 16          # DATASET.TARGET_STRIDE: the map is T x T, T = NUM_SAMPLE_CLIPS // TARGET_STRIDE
_TAN.NORMALIZE = True            # DATASET.NORMALIZE: L2-normalise each raw clip before resampling
_TAN.GLOVE = ""                  # GloVe text file (glove.6B.300d.txt) or .npz (words, vectors); rel. to DATASETS.ROOT
_TAN.FRAME_MODULE = CN()         # FrameAvgPool
_TAN.FRAME_MODULE.INPUT_SIZE = 4096
_TAN.FRAME_MODULE.HIDDEN_SIZE = 512
_TAN.FRAME_MODULE.KERNEL_SIZE = 16
_TAN.FRAME_MODULE.STRIDE = 16
_TAN.PROP_MODULE = CN()
_TAN.PROP_MODULE.NAME = "SparsePropMaxPool"  # or "SparsePropConv"
_TAN.PROP_MODULE.NUM_SCALE_LAYERS = [16]
_TAN.PROP_MODULE.HIDDEN_SIZE = 512           # SparsePropConv only
_TAN.FUSION_MODULE = CN()        # BaseFusion
_TAN.FUSION_MODULE.HIDDEN_SIZE = 512
_TAN.FUSION_MODULE.TXT_INPUT_SIZE = 300
_TAN.FUSION_MODULE.TXT_HIDDEN_SIZE = 512
_TAN.FUSION_MODULE.LSTM = CN()
_TAN.FUSION_MODULE.LSTM.NUM_LAYERS = 3
_TAN.FUSION_MODULE.LSTM.BIDIRECTIONAL = False
_TAN.MAP_MODULE = CN()           # MapConv
_TAN.MAP_MODULE.INPUT_SIZE = 512
_TAN.MAP_MODULE.HIDDEN_SIZES = [512] * 8
_TAN.MAP_MODULE.KERNEL_SIZES = [5] * 8
_TAN.MAP_MODULE.STRIDES = [1] * 8
_TAN.MAP_MODULE.PADDINGS = [16, 0, 0, 0, 0, 0, 0, 0]
_TAN.MAP_MODULE.DILATIONS = [1] * 8
_TAN.PRED_INPUT_SIZE = 512
_TAN.LOSS = CN()                 # bce_rescale_loss
_TAN.LOSS.MIN_IOU = 0.5
_TAN.LOSS.MAX_IOU = 1.0
_TAN.LOSS.BIAS = 0.0
_TAN.SOLVER = CN()               # Adam + ReduceLROnPlateau stepped on -val_loss (official sign)
_TAN.SOLVER.LR = 1e-4
_TAN.SOLVER.WEIGHT_DECAY = 0.0
_TAN.SOLVER.FACTOR = 0.8
_TAN.SOLVER.PATIENCE = 20
_TAN.SOLVER.PLATEAU_SIGN = -1.0  # the scheduler sees SIGN x val loss: -1 official, +1 a plateau on the loss
_TAN.ZERO_SCORE_CANDIDATES = True  # masked cells (score 0) are ranked last, as the official eval; False: MMN's

register_model_config("TAN", _TAN)
