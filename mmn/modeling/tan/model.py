"""2D-TAN: Learning 2D Temporal Adjacent Networks for Moment Localization with Natural Language (AAAI 2020).

The official ``TAN`` (``lib/models/tan.py``): frame module -> sparse 2D moment map -> LSTM sentence
encoder fused by Hadamard product and L2 normalisation -> mask-weighted map convolutions -> 1x1
prediction conv, x map_mask. Parameter names are the official ones (``frame_layer.vis_conv.*``,
``prop_layer.layers.*`` for the conv map, ``fusion_layer.{textual_encoder,tex_linear,vis_conv}.*``,
``map_layer.convs.*``, ``pred_layer.*``), so the official .pkl state dicts load strictly. TAN has no
dropout or batch norm: the train and eval forwards are the same computation. See docs/TAN.md.
"""

import torch
from torch import nn

from ...utils.errors import ConfigError
from ..base import GroundingModel, RankedMoments
from ..registry import register_model
from .data import (TANCollator, TANDataset, annotation_format, config_tokens, glove_path, load_word_vectors,
                   num_map_clips, official_tokens, prepare_features)
from .frame import FrameAvgPool
from .fusion import BaseFusion
from .loss import bce_rescale_loss
from .map_conv import MapConv
from .optim import build_tan_optimizer, step_plateau
from .prop import SparsePropConv, SparsePropMaxPool, check_scale_layers
from .ranking import top_moments

PROP_MODULES = ("SparsePropMaxPool", "SparsePropConv")


def _conv_out(size, kernel, stride, padding, dilation):
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


@register_model("TAN")
class TAN(GroundingModel):
    def __init__(self, cfg):
        super().__init__(cfg)
        type(self).check_config(cfg)
        c = cfg.MODEL.TAN
        self.num_clips = num_map_clips(cfg)
        f, p, u, m = c.FRAME_MODULE, c.PROP_MODULE, c.FUSION_MODULE, c.MAP_MODULE
        self.frame_layer = FrameAvgPool(f.INPUT_SIZE, f.HIDDEN_SIZE, f.KERNEL_SIZE, f.STRIDE)
        if p.NAME == "SparsePropMaxPool":
            self.prop_layer = SparsePropMaxPool(list(p.NUM_SCALE_LAYERS), self.num_clips)
        else:
            self.prop_layer = SparsePropConv(list(p.NUM_SCALE_LAYERS), self.num_clips, p.HIDDEN_SIZE)
        self.fusion_layer = BaseFusion(u.HIDDEN_SIZE, u.TXT_INPUT_SIZE, u.TXT_HIDDEN_SIZE, u.LSTM.NUM_LAYERS,
                                       u.LSTM.BIDIRECTIONAL)
        self.map_layer = MapConv(m.INPUT_SIZE, m.HIDDEN_SIZES, m.KERNEL_SIZES, m.STRIDES, m.PADDINGS, m.DILATIONS,
                                 self.prop_layer.mask2d)
        self.pred_layer = nn.Conv2d(c.PRED_INPUT_SIZE, 1, 1, 1)
        self.loss_args = dict(min_iou=c.LOSS.MIN_IOU, max_iou=c.LOSS.MAX_IOU, bias=c.LOSS.BIAS)
        self.nms_thresh = cfg.TEST.NMS_THRESH
        self.zero_score_candidates = bool(c.ZERO_SCORE_CANDIDATES)
        self.plateau_sign = float(c.SOLVER.PLATEAU_SIGN)

    # ------------------------------------------------------------------ config and data
    @classmethod
    def check_config(cls, cfg):
        c = cfg.MODEL.TAN
        f, p, u, m = c.FRAME_MODULE, c.PROP_MODULE, c.FUSION_MODULE, c.MAP_MODULE
        problems = []
        if c.TARGET_STRIDE < 1 or c.NUM_SAMPLE_CLIPS < c.TARGET_STRIDE:
            problems.append(f"MODEL.TAN.NUM_SAMPLE_CLIPS {c.NUM_SAMPLE_CLIPS} must be >= TARGET_STRIDE "
                            f"{c.TARGET_STRIDE} >= 1")
            raise ConfigError("; ".join(problems))
        t = c.NUM_SAMPLE_CLIPS // c.TARGET_STRIDE
        frames = _conv_out(c.NUM_SAMPLE_CLIPS, f.KERNEL_SIZE, f.STRIDE, 0, 1)
        if frames != t:
            problems.append(f"MODEL.TAN.FRAME_MODULE KERNEL_SIZE {f.KERNEL_SIZE} / STRIDE {f.STRIDE} pool "
                            f"NUM_SAMPLE_CLIPS {c.NUM_SAMPLE_CLIPS} to {frames} clips, but the map needs "
                            f"NUM_SAMPLE_CLIPS // TARGET_STRIDE = {t}")
        if p.NAME not in PROP_MODULES:
            problems.append(f"MODEL.TAN.PROP_MODULE.NAME must be one of {PROP_MODULES}, got {p.NAME!r}")
        if not p.NUM_SCALE_LAYERS or min(p.NUM_SCALE_LAYERS) < 1:
            problems.append(f"MODEL.TAN.PROP_MODULE.NUM_SCALE_LAYERS must be positive counts, got {p.NUM_SCALE_LAYERS}")
        else:
            problems += [f"MODEL.TAN.PROP_MODULE.NUM_SCALE_LAYERS {list(p.NUM_SCALE_LAYERS)} on a {t} x {t} map: {x} "
                         "(the official code would skip that layer silently)"
                         for x in check_scale_layers(list(p.NUM_SCALE_LAYERS), t)]
        if p.NAME == "SparsePropConv" and p.HIDDEN_SIZE != f.HIDDEN_SIZE:
            problems.append(f"MODEL.TAN.PROP_MODULE.HIDDEN_SIZE {p.HIDDEN_SIZE} != FRAME_MODULE.HIDDEN_SIZE {f.HIDDEN_SIZE}")
        if u.HIDDEN_SIZE != f.HIDDEN_SIZE:
            problems.append(f"MODEL.TAN.FUSION_MODULE.HIDDEN_SIZE {u.HIDDEN_SIZE} != FRAME_MODULE.HIDDEN_SIZE {f.HIDDEN_SIZE}")
        if u.LSTM.BIDIRECTIONAL and u.TXT_HIDDEN_SIZE % 2:
            problems.append(f"MODEL.TAN.FUSION_MODULE.TXT_HIDDEN_SIZE {u.TXT_HIDDEN_SIZE} must be even when bidirectional")
        if m.INPUT_SIZE != u.HIDDEN_SIZE:
            problems.append(f"MODEL.TAN.MAP_MODULE.INPUT_SIZE {m.INPUT_SIZE} != FUSION_MODULE.HIDDEN_SIZE {u.HIDDEN_SIZE}")
        lists = {k: list(m[k]) for k in ("HIDDEN_SIZES", "KERNEL_SIZES", "STRIDES", "PADDINGS", "DILATIONS")}
        if len({len(v) for v in lists.values()}) != 1 or not lists["HIDDEN_SIZES"]:
            problems.append(f"MODEL.TAN.MAP_MODULE lists must have one equal, non-zero length: "
                            f"{ {k: len(v) for k, v in lists.items()} }")
        else:
            size = t
            for k, s, pad, d in zip(lists["KERNEL_SIZES"], lists["STRIDES"], lists["PADDINGS"], lists["DILATIONS"]):
                size = _conv_out(size, k, s, pad, d)
            if size != t:
                problems.append(f"MODEL.TAN.MAP_MODULE KERNEL_SIZES/STRIDES/PADDINGS/DILATIONS turn the {t} x {t} map "
                                f"into {size} x {size}; the prediction needs {t} x {t} (official rule: first padding "
                                "(k - 1) x layers / 2, the others 0)")
            if lists["HIDDEN_SIZES"][-1] != c.PRED_INPUT_SIZE:
                problems.append(f"MODEL.TAN.PRED_INPUT_SIZE {c.PRED_INPUT_SIZE} != MAP_MODULE.HIDDEN_SIZES[-1] "
                                f"{lists['HIDDEN_SIZES'][-1]}")
        if not c.LOSS.MAX_IOU > c.LOSS.MIN_IOU:
            problems.append(f"MODEL.TAN.LOSS.MAX_IOU {c.LOSS.MAX_IOU} must be > MIN_IOU {c.LOSS.MIN_IOU}")
        if problems:
            raise ConfigError("; ".join(problems))

    @classmethod
    def feature_dim(cls, cfg):
        return cfg.MODEL.TAN.FRAME_MODULE.INPUT_SIZE, "MODEL.TAN.FRAME_MODULE.INPUT_SIZE"

    @classmethod
    def word_vectors(cls, cfg, words):
        """GloVe vectors of ``words`` and of every token of the config's splits (DATASETS.TRAIN, VAL, TEST),
        so that a GloVe text file is read once for all of them."""
        return load_word_vectors(glove_path(cfg), set(words) | config_tokens(cfg),
                                 cfg.MODEL.TAN.FUSION_MODULE.TXT_INPUT_SIZE)

    @classmethod
    def build_dataset(cls, cfg, entry, is_train=False):
        c = cfg.MODEL.TAN
        return TANDataset(entry.ann_file, entry.feat_file, entry.format,
                          lambda words: cls.word_vectors(cfg, words), c.NUM_SAMPLE_CLIPS, num_map_clips(cfg),
                          normalize=c.NORMALIZE, feat_key=entry.feat_key, feat_dim=c.FRAME_MODULE.INPUT_SIZE,
                          feat_dim_key="MODEL.TAN.FRAME_MODULE.INPUT_SIZE")

    @classmethod
    def build_query_batch(cls, cfg, features, duration, sentences):
        c = cfg.MODEL.TAN
        fmt = annotation_format(cfg)
        tokens = [official_tokens(s, fmt) for s in sentences]
        vectors = cls.word_vectors(cfg, {t for ts in tokens for t in ts})
        visual = prepare_features(torch.as_tensor(features, dtype=torch.float32), c.NUM_SAMPLE_CLIPS, c.NORMALIZE)
        t = num_map_clips(cfg)
        items = [{"visual_input": visual, "word_vectors": vectors(ts), "map_gt": torch.zeros(t, t, dtype=torch.float64),
                  "duration": float(duration), "moment": torch.tensor([0.0, float(duration)], dtype=torch.float64),
                  "idx": k} for k, ts in enumerate(tokens)]
        return TANCollator()(items)

    # ------------------------------------------------------------------ network
    @property
    def mask2d(self):
        return self.prop_layer.mask2d

    def forward_outputs(self, batch):
        """Every intermediate of the official forward (names of the parity fixture)."""
        vis_h = self.frame_layer(batch.vis_input.transpose(1, 2))
        map_h, map_mask = self.prop_layer(vis_h)
        fused_h, (txt_lstm, txt_last, txt_h) = self.fusion_layer(batch.word_vectors, batch.txt_mask, map_h, map_mask,
                                                                 return_text=True)
        map_conv_h, conv_layers = self.map_layer(fused_h, return_layers=True)
        pred_unmasked = self.pred_layer(map_conv_h)
        prediction = pred_unmasked * map_mask
        return {"vis_h": vis_h, "map_h": map_h, "map_mask": map_mask, "txt_lstm": txt_lstm, "txt_last": txt_last,
                "txt_h": txt_h, "fused_h": fused_h, "map_conv_layers": conv_layers, "map_conv_h": map_conv_h,
                "pred_unmasked": pred_unmasked, "prediction": prediction}

    def predict(self, batch):
        """(prediction B x 1 x T x T logits x mask, map_mask B x 1 x T x T): the official ``TAN.forward``."""
        vis_h = self.frame_layer(batch.vis_input.transpose(1, 2))
        map_h, map_mask = self.prop_layer(vis_h)
        fused_h = self.fusion_layer(batch.word_vectors, batch.txt_mask, map_h, map_mask)
        prediction = self.pred_layer(self.map_layer(fused_h)) * map_mask
        return prediction, map_mask

    def forward(self, batch, epoch=1):
        """Training: {"loss"}. Evaluation: {"joint_prob" B x T x T, "loss"} (the loss on the batch's
        targets, as the official evaluation logs it; meaningless for a prediction batch)."""
        prediction, map_mask = self.predict(batch)
        with torch.autocast(device_type=prediction.device.type, enabled=False):
            loss, joint_prob = bce_rescale_loss(prediction.float(), map_mask.float(), batch.map_gt.float(),
                                                **self.loss_args)
        if self.training:
            return {"loss": loss}
        return {"joint_prob": joint_prob[:, 0], "loss": loss}

    # ------------------------------------------------------------------ training
    def build_optimizer(self, cfg):
        return build_tan_optimizer(self.parameters(), cfg)

    def end_epoch(self, scheduler, record):
        """ReduceLROnPlateau on -(validation loss) (official sign, ``train.py:198-202``), the loss the engine's
        evaluation of DATASETS.VAL records (``record["val"]["loss"]``, the mean of the batch losses, as the
        official evaluation logs it); no step without a validation split (DATASETS.VAL empty: the official
        NO_VAL)."""
        if scheduler is not None:
            step_plateau(scheduler, record, self.plateau_sign)

    # ------------------------------------------------------------------ inference
    def rank_moments(self, outputs, batch, topk):
        score_maps = outputs["joint_prob"].detach().float().cpu()
        moments, scores = top_moments(score_maps, batch.durations.cpu(), self.nms_thresh, k=topk,
                                      zero_score_candidates=self.zero_score_candidates)
        return RankedMoments(moments=moments, scores=scores, score_maps=score_maps)


__all__ = ["TAN"]
