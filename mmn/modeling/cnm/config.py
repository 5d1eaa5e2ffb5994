"""CNM's config node, MODEL.CNM (weakly supervised, Gaussian-mask proposals; docs/CNM.md): the release's
Charades-STA values."""
from yacs.config import CfgNode as CN

from ...config.defaults import register_model_config

_CNM = CN()
_CNM.FRAME_DIM = 1024            # frame feature size (Charades I3D 1024; ActivityNet C3D 500, CLIP 512)
_CNM.WORD_DIM = 300              # GloVe
_CNM.HIDDEN_SIZE = 256           # hidden_size = d_model of the DualTransformer
_CNM.NUM_HEADS = 4
_CNM.NUM_LAYERS_1 = 3            # decoder1 (frames)
_CNM.NUM_LAYERS_2 = 3            # decoder2 (words)
_CNM.DROPOUT = 0.1               # on the input frame / word features
_CNM.TRANSFORMER_DROPOUT = 0.1   # after every transformer sub-layer
_CNM.ALPHA = 5.5                 # Gaussian sharpness (ActivityNet 5)
_CNM.MAX_WIDTH = 0.45            # predicted width scale (ActivityNet 1)
_CNM.MIN_WIDTH = 0.1             # width clamp inside the Gaussian mask (release constant)
_CNM.PROPOSAL_STRIDE = 4         # reconstructor sees NUM_FRAMES // 4 proposal positions
_CNM.MASK_DIVISOR = 3            # max(words // 3, 1) words masked
_CNM.USE_NEGATIVE = True
# (mmn) how the generator reads (c, w): "last" = fc_mask_gen on the last frame state (the release);
# "pooled" = fc_mask_gen on every frame, c = attention-weighted position (used by the synthetic demo)
_CNM.GENERATOR_HEAD = "last"
_CNM.VOCAB_SIZE = 1111           # kept training words (ActivityNet 8000); the output layer has VOCAB_SIZE + 1
_CNM.MAX_NUM_WORDS = 20
_CNM.NUM_FRAMES = 200            # frames resampled to this many (bin means, not L2-normalised)
_CNM.GLOVE = ""                  # .npz (words, vectors[, counts]) or GloVe text file; relative to DATASETS.ROOT
_CNM.FEATURE_FILE = ""           # HDF5 frame features; "" = the catalog's file; relative to DATASETS.ROOT
_CNM.FEATURE_KEY = "default"     # f[vid][KEY]; "default" = the catalog format's key, "" = f[vid] itself
_CNM.LOSS = CN()
_CNM.LOSS.BETA1 = 0.1
_CNM.LOSS.BETA2 = 0.15
_CNM.LOSS.LABEL_SMOOTHING = 0.1
_CNM.SOLVER = CN()
_CNM.SOLVER.LR = 4e-4
_CNM.SOLVER.WARMUP_UPDATES = 400
_CNM.SOLVER.WARMUP_INIT_LR = 1e-7
_CNM.SOLVER.BETAS = (0.9, 0.999)
_CNM.SOLVER.EPS = 1e-8
_CNM.SOLVER.WEIGHT_DECAY = 0.0
_CNM.SOLVER.MAX_GRAD_NORM = 10.0

register_model_config("CNM", _CNM)
