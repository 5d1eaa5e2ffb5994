"""Moment-DETR's config node, MODEL.MOMENT_DETR: the official option names (upper-cased) and defaults of
jayleicn/moment_detr (``moment_detr/config.py`` BaseOptions, ``moment_detr/scripts/train.sh``).

Official option -> key here (the rest of the official options are data paths, logging or devices):
``--hidden_dim`` HIDDEN_DIM, ``--nheads`` NHEADS, ``--enc_layers`` / ``--dec_layers``, ``--dim_feedforward``,
``--num_queries``, ``--input_dropout``, ``--dropout``, ``--pre_norm``, ``--n_input_proj``,
``--position_embedding``, ``--use_txt_pos``, ``--no_aux_loss`` (AUX_LOSS False), ``--span_loss_type``,
``--contrastive_align_loss``, ``--contrastive_hdim``, ``--temperature``; ``--v_feat_dim`` V_FEAT_DIM (the sum
of the video feature folders' widths, as given on the official command line: the two TEF columns are added
by the model when CTX_MODE holds "tef", as the official options add 2), ``--t_feat_dim``, ``--ctx_mode``,
``--max_q_l``, ``--max_v_l``, ``--clip_length``, ``--max_windows``, ``--txt_drop_ratio``,
``--no_norm_vfeat``, ``--no_norm_tfeat``; matcher ``--set_cost_{span,giou,class}``; losses
``--{span,giou,label}_loss_coef``, ``--eos_coef``, ``--contrastive_align_loss_coef``, ``--lw_saliency``,
``--saliency_margin``; optimiser ``--lr``, ``--wd``, ``--lr_drop`` under SOLVER. The official ``--bsz`` 32,
``--n_epoch`` 200, ``--grad_clip`` 0.1 and ``--max_es_cnt`` are the shared SOLVER.BATCH_SIZE,
SOLVER.MAX_EPOCH and SOLVER.MAX_GRAD_NORM of a Moment-DETR config file.

POSTPROCESS is the official ``PostProcessorDETR`` of ``inference.py`` (hard-coded there): windows clamped
to [0, 150] s whatever the video's duration, then rounded to multiples of 2 s. CLIP_TO_DURATION True
clamps to [0, duration] instead (other datasets, own videos: see ``postprocess.py``).
"""
from yacs.config import CfgNode as CN

from ...config.defaults import register_model_config

_MDETR = CN()
# model (moment_detr/model.py, transformer.py, position_encoding.py)
_MDETR.HIDDEN_DIM = 256
_MDETR.NHEADS = 8
_MDETR.ENC_LAYERS = 2
_MDETR.DEC_LAYERS = 2
_MDETR.DIM_FEEDFORWARD = 1024
_MDETR.NUM_QUERIES = 10
_MDETR.INPUT_DROPOUT = 0.5
_MDETR.DROPOUT = 0.1
_MDETR.PRE_NORM = False
_MDETR.N_INPUT_PROJ = 2
_MDETR.POSITION_EMBEDDING = "sine"      # the only one the official build_position_encoding accepts
_MDETR.USE_TXT_POS = False
_MDETR.AUX_LOSS = True                  # --no_aux_loss sets False
_MDETR.SPAN_LOSS_TYPE = "l1"            # the official "ce" variant is not implemented here
_MDETR.CONTRASTIVE_ALIGN_LOSS = False   # not implemented here (official default: off)
_MDETR.CONTRASTIVE_HDIM = 64
_MDETR.TEMPERATURE = 0.07
# inputs (moment_detr/start_end_dataset.py); scripts/train.sh: SlowFast 2304 + CLIP 512, CLIP text 512
_MDETR.V_FEAT_DIM = 2816
_MDETR.T_FEAT_DIM = 512
_MDETR.CTX_MODE = "video_tef"
_MDETR.MAX_Q_L = 32
_MDETR.MAX_V_L = 75
_MDETR.CLIP_LENGTH = 2
_MDETR.MAX_WINDOWS = 5
_MDETR.TXT_DROP_RATIO = 0.0
_MDETR.NO_NORM_VFEAT = False
_MDETR.NO_NORM_TFEAT = False
# Hungarian matcher (moment_detr/matcher.py)
_MDETR.SET_COST_SPAN = 10.0
_MDETR.SET_COST_GIOU = 1.0
_MDETR.SET_COST_CLASS = 4.0
# losses (moment_detr/model.py SetCriterion)
_MDETR.SPAN_LOSS_COEF = 10.0
_MDETR.GIOU_LOSS_COEF = 1.0
_MDETR.LABEL_LOSS_COEF = 4.0
_MDETR.EOS_COEF = 0.1
_MDETR.CONTRASTIVE_ALIGN_LOSS_COEF = 0.0
_MDETR.LW_SALIENCY = 1.0
_MDETR.SALIENCY_MARGIN = 0.2
# optimiser (moment_detr/inference.py setup_model): AdamW(lr, weight_decay=wd), StepLR(step_size=lr_drop)
_MDETR.SOLVER = CN()
_MDETR.SOLVER.LR = 1e-4
_MDETR.SOLVER.WD = 1e-4
_MDETR.SOLVER.LR_DROP = 400
# post-processing (moment_detr/inference.py compute_mr_results, PostProcessorDETR)
_MDETR.POSTPROCESS = CN()
_MDETR.POSTPROCESS.MAX_TS_VAL = 150.0     # official clamp [0, 150] s (QVHighlights videos are 150 s)
_MDETR.POSTPROCESS.CLIP_TO_DURATION = False  # (mmn) True: clamp to [0, the video's duration] instead
_MDETR.POSTPROCESS.ROUND_MULTIPLE = 2.0   # official: windows rounded to multiples of 2 s; 0 = no rounding

register_model_config("MOMENT_DETR", _MDETR)


def video_input_dim(c):
    """Width of the model's video input for node ``c`` (MODEL.MOMENT_DETR): the features plus 2 TEF columns
    when CTX_MODE holds "tef", no features when it lacks "video" (official ``config.py:205-210``)."""
    return (c.V_FEAT_DIM if "video" in c.CTX_MODE else 0) + (2 if "tef" in c.CTX_MODE else 0)


def weight_dict(c):
    """The official loss weights (``model.py:421-432``), in the official order: span, giou, label,
    saliency, then per auxiliary decoder layer i the ``_i`` copies without saliency."""
    base = {"loss_span": c.SPAN_LOSS_COEF, "loss_giou": c.GIOU_LOSS_COEF, "loss_label": c.LABEL_LOSS_COEF,
            "loss_saliency": c.LW_SALIENCY}
    weights = dict(base)
    if c.AUX_LOSS:
        for i in range(c.DEC_LAYERS - 1):
            weights.update({f"{k}_{i}": v for k, v in base.items() if k != "loss_saliency"})
    return weights
