"""QD-DETR's config node, MODEL.QD_DETR.

The official options of wjun0830/QD-DETR (``qd_detr/config.py`` BaseOptions, ``qd_detr/scripts/train.sh``)
are Moment-DETR's, with the same defaults (the two files differ only by TVSum / audio options and paths),
so the node is a copy of MODEL.MOMENT_DETR's defaults (see ``mmn/modeling/moment_detr/config.py`` for the
official option -> key table). What the keys mean in QD-DETR:

- ENC_LAYERS sets both stacks: that many text-to-video cross-attention layers, then that many
  self-attention layers over [global token; video] (the official code has no separate option,
  ``transformer.py:74, 81``);
- HIDDEN_DIM must be 256: the anchor decoder's sine embedding has 128 features per coordinate whatever the
  width (``transformer.py:44-45``) and feeds Linear(HIDDEN_DIM, .) layers;
- LW_SALIENCY weighs the whole QD-DETR saliency loss (hinge + rank-contrastive + negative pair);
- CONTRASTIVE_ALIGN_LOSS and SPAN_LOSS_TYPE "ce" are refused (in QD-DETR the first reads an empty text
  memory and the second breaks the anchor refinement's shapes);
- PRE_NORM is refused (the official pre-norm text-to-video layer hard-codes 75 clips and prints).

scripts/train.sh runs QVHighlights with SlowFast + CLIP video features (V_FEAT_DIM 2816) and CLIP text
token features (T_FEAT_DIM 512), batch 32, 200 epochs, every other option at its default.
"""
from ...config.defaults import register_model_config
from ..moment_detr.config import _MDETR

_QD_DETR = _MDETR.clone()

register_model_config("QD_DETR", _QD_DETR)
