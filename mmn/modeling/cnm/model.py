"""CNM: Weakly Supervised Video Moment Localization with Contrastive Negative Sample Mining (AAAI 2022).

One network, as the release: a shared ``DualTransformer`` serves both the mask generator and the
mask-conditioned reconstructor; ``fc_mask_gen`` (hidden -> 2) predicts the Gaussian centre and
width, ``fc_rec`` (hidden -> vocabulary) predicts the next word. Parameter names are those of the
release, so its state_dict loads with ``load_state_dict``.

The model contract (mmn/modeling/base.py; see docs/CNM.md):

- one update is two phases (``update_phases``), run by the engine's ``run_step``: L_rec updates the
  reconstructor, then a new forward's L_IVC updates the generator, then both per-update schedules step
  (``after_step``). Its optimisers are ``model.build_optimizer(cfg)`` (no epoch schedule).
- ``model(batch, phase=...)`` in train mode: the loss of that phase; without ``phase``, the losses of one
  forward (``loss`` = L_rec + L_IVC, only for logging: back-propagating it is the paper's "jointly" ablation).
- ``model(batch)`` in eval mode: ``moments`` Q x 1 x 2 normalised (s, e), ``scores`` Q x 1 (ones: CNM
  predicts one moment per query, no NMS), ``center``, ``width``.

Timestamps are never read: only ``frames_feat``, ``frames_len``, ``words_feat``, ``words_len``,
``words_id`` and ``weights`` of the batch (see mmn/modeling/cnm/data.py).
"""
import torch
import torch.nn.functional as F
from torch import nn

from ...utils.errors import ConfigError
from ..base import GroundingModel, RankedMoments, UpdatePhase
from ..registry import register_model
from .data import build_cnm_dataset, build_query_batch, cached_cnm_vocabulary
from .gauss import easy_negative_mask, gaussian_mask, moments_from_gaussian
from .loss import ivc_loss, rec_loss, reconstruction_nll
from .optim import CNMOptimizers
from .transformer import DualTransformer, sinusoidal_embedding

GENERATOR_KEY = "mask_gen"  # parameters whose name contains this form the generator's group (release rule)


def _field(batch, name):
    return batch[name] if isinstance(batch, dict) else getattr(batch, name)


def lengths_to_valid(lengths, size):
    """B x size bool, True on the first ``lengths[b]`` positions."""
    return torch.arange(size, device=lengths.device)[None, :] < lengths[:, None]


def sample_masked_words(words_len, weights, size, num_masked_divisor=3, generator=None):
    """Word positions to replace by the mask token: B x size bool.

    Per query with l words (positions 1..l; position 0 is the start token): max(l // 3, 1) positions
    drawn without replacement with probabilities ``weights[:, :l]`` (as ``np.random.choice(..., p=p,
    replace=False)`` of the release), here by the equivalent Gumbel-top-k draw, vectorised.
    """
    if (words_len < 1).any():
        raise ValueError("CNM training needs at least one word per query (a query has words_len 0)")
    bsz, num_words = weights.shape
    valid = lengths_to_valid(words_len, num_words)
    u = torch.rand(weights.shape, generator=generator, device=weights.device)
    gumbel = -torch.log(-torch.log(u.clamp(min=1e-20, max=1 - 1e-7)))
    keys = torch.log(weights.clamp(min=1e-30)) + gumbel
    keys = keys.masked_fill(~valid, float("-inf"))
    rank = keys.argsort(dim=1, descending=True).argsort(dim=1)
    k = torch.clamp(words_len // num_masked_divisor, min=1)
    chosen = (rank < k[:, None]) & valid
    masked = torch.zeros(bsz, size, dtype=torch.bool, device=weights.device)
    masked[:, 1:num_words + 1] = chosen
    return masked


@register_model("CNM")
class CNM(GroundingModel):
    # no DistributedDataParallel: its reducer would average the two phases' gradients at the wrong time; under
    # torchrun the engine averages each phase's gradients, so both groups stay identical on every rank
    wrap_in_ddp = False

    def __init__(self, cfg):
        super().__init__(cfg)
        c = cfg.MODEL.CNM
        self.max_grad_norm = float(c.SOLVER.MAX_GRAD_NORM)  # every gradient, each phase (the release's clip)
        hidden = c.HIDDEN_SIZE
        self.dropout = c.DROPOUT
        self.alpha = c.ALPHA
        self.max_width = c.MAX_WIDTH
        self.min_width = c.MIN_WIDTH
        self.proposal_stride = c.PROPOSAL_STRIDE
        self.num_masked_divisor = c.MASK_DIVISOR
        self.use_negative = c.USE_NEGATIVE
        self.label_smoothing = c.LOSS.LABEL_SMOOTHING
        self.beta1, self.beta2 = c.LOSS.BETA1, c.LOSS.BETA2
        self.vocab_size = c.VOCAB_SIZE + 1  # kept words + id 0 (padding, predicted after the last word)
        self.hidden_size = hidden
        if c.GENERATOR_HEAD not in ("last", "pooled"):
            raise ConfigError(f"MODEL.CNM.GENERATOR_HEAD must be 'last' or 'pooled', got {c.GENERATOR_HEAD!r}")
        self.generator_head = c.GENERATOR_HEAD
        # creation order = the release's, so that the same seed gives the same initial weights
        self.frame_fc = nn.Linear(c.FRAME_DIM, hidden)
        self.word_fc = nn.Linear(c.WORD_DIM, hidden)
        self.mask_vec = nn.Parameter(torch.zeros(c.WORD_DIM))
        self.start_vec = nn.Parameter(torch.zeros(c.WORD_DIM))
        self.trans = DualTransformer(hidden, c.NUM_HEADS, c.NUM_LAYERS_1, c.NUM_LAYERS_2, c.TRANSFORMER_DROPOUT)
        self.fc_rec = nn.Linear(hidden, self.vocab_size)
        self.fc_mask_gen = nn.Linear(hidden, 2)

    # ------------------------------------------------------------------ parameter groups
    def parameter_groups(self):
        """{"reconstructor": [...], "generator": [...]}: the generator is ``fc_mask_gen`` alone (release)."""
        groups = {"reconstructor": [], "generator": []}
        for name, p in self.named_parameters():
            groups["generator" if GENERATOR_KEY in name else "reconstructor"].append(p)
        return groups

    def build_optimizer(self, cfg):
        """The release's two Adam optimisers with their per-update schedules (``CNMOptimizers``); no epoch
        scheduler."""
        s = cfg.MODEL.CNM.SOLVER
        groups = self.parameter_groups()
        optimizers = CNMOptimizers(groups["reconstructor"], groups["generator"], lr=s.LR,
                                   warmup_updates=s.WARMUP_UPDATES, warmup_init_lr=s.WARMUP_INIT_LR,
                                   betas=tuple(s.BETAS), eps=s.EPS, weight_decay=s.WEIGHT_DECAY)
        return optimizers, None

    def update_phases(self):
        """One CNM iteration, exactly as the release's loop (the engine's ``run_step`` runs it):

        1. ``fc_mask_gen`` frozen; forward; L_rec; backward; clip the norm of ALL gradients to
           MODEL.CNM.SOLVER.MAX_GRAD_NORM (stale gradients of the frozen group included, as the release);
           step the reconstructor's Adam (every parameter but ``fc_mask_gen``);
        2. everything but ``fc_mask_gen`` frozen; a new forward (new word masking); L_IVC; backward; clip;
           step the generator's Adam;
        then ``after_step`` steps both learning-rate schedules.
        """
        if not self.use_negative:
            raise RuntimeError("CNM training needs MODEL.CNM.USE_NEGATIVE (L_IVC trains the generator)")
        return (UpdatePhase(name="reconstructor", loss="loss_rec", trainable="reconstructor", optimizer="reconstructor"),
                UpdatePhase(name="generator", loss="loss_ivc", trainable="generator", optimizer="generator"))

    def training_inputs(self, batch):
        if isinstance(batch, list):
            raise ConfigError("CNM's loss is per query: SOLVER.NUM_SHARDS would change nothing but the batch; "
                              "set SOLVER.NUM_SHARDS 0")
        return [batch]

    def after_step(self, optimizer):
        """Both per-update schedules (``CNMOptimizers.step_update``)."""
        optimizer.step_update()

    # ------------------------------------------------------------------ the model contract (mmn/modeling/base.py)
    @classmethod
    def feature_dim(cls, cfg):
        return cfg.MODEL.CNM.FRAME_DIM, "MODEL.CNM.FRAME_DIM"

    @classmethod
    def build_dataset(cls, cfg, entry, is_train=False):
        return build_cnm_dataset(cfg, entry, cached_cnm_vocabulary(cfg), is_training=is_train)

    @classmethod
    def build_query_batch(cls, cfg, features, duration, sentences):
        return build_query_batch(cfg, features, duration, sentences)

    def rank_moments(self, outputs, batch, topk):
        """CNM's one moment per query (normalised (s, e) times the duration), score 1."""
        moments = outputs["moments"].double().cpu() * batch.durations.cpu().double()[:, None, None]
        return RankedMoments(moments[:, :topk], outputs["scores"].float().cpu()[:, :topk])

    # ------------------------------------------------------------------ network
    def generate(self, batch):
        """Mask generator: encoded frames/words and the Gaussian (center, width), each B."""
        frames_feat = _field(batch, "frames_feat")
        frames_len = _field(batch, "frames_len")
        words_feat = _field(batch, "words_feat")
        words_len = _field(batch, "words_len")
        bsz, n_frames, _ = frames_feat.shape
        frames = self.frame_fc(F.dropout(frames_feat, self.dropout, self.training))
        frames_valid = lengths_to_valid(frames_len, n_frames)

        # the release overwrites position 0 (a copy of the first word's vector) with start_vec, in place
        words = torch.cat([self.start_vec.to(words_feat.dtype).expand(bsz, 1, -1), words_feat[:, 1:]], dim=1)
        words_pos = sinusoidal_embedding(words.shape[1], self.hidden_size).to(words.device, words.dtype)
        words = self.word_fc(F.dropout(words, self.dropout, self.training))
        words_valid = lengths_to_valid(words_len + 1, words.shape[1])

        h = self.trans.generate(frames, frames_valid, words + words_pos, words_valid)
        if self.generator_head == "last":
            gauss = torch.sigmoid(self.fc_mask_gen(h[:, -1])).view(bsz, 2)  # the LAST position, as the release
            center, width = gauss[:, 0], gauss[:, 1] * self.max_width
        else:  # "pooled" (mmn option): fc_mask_gen on every frame; softmax over frames of the first output
            out = self.fc_mask_gen(h)  # B x T x 2
            attention = out[..., 0].masked_fill(~frames_valid, float("-inf")).softmax(dim=1)
            positions = torch.linspace(0, 1, n_frames, device=h.device, dtype=h.dtype)
            center = (attention * positions).sum(dim=1)  # expected position under the attention
            width = torch.sigmoid((attention * out[..., 1]).sum(dim=1)) * self.max_width
        return {"frames": frames, "frames_valid": frames_valid, "words": words, "words_pos": words_pos,
                "words_valid": words_valid, "center": center, "width": width}

    def forward_outputs(self, batch, masked_words=None, easy_negative=True):
        """Training-mode forward of the release: Gaussian mask, masked query, word logits of the
        positive (m_p), hard negative (whole video) and easy negative (1 - m_p) reconstructions."""
        g = self.generate(batch)
        frames, frames_valid = g["frames"], g["frames_valid"]
        n_frames = frames.shape[1]
        num_props = n_frames // self.proposal_stride  # downsampled for efficiency, as the release
        keep_idx = torch.linspace(0, n_frames - 1, steps=num_props).long().to(frames.device)
        props, props_valid = frames[:, keep_idx], frames_valid[:, keep_idx]
        gauss_weight = gaussian_mask(g["center"], g["width"], num_props, self.alpha, self.min_width)

        words, words_valid = g["words"], g["words_valid"]
        words_len, weights = _field(batch, "words_len"), _field(batch, "weights")
        if masked_words is None:
            masked_words = sample_masked_words(words_len, weights, words.shape[1], self.num_masked_divisor)
        masked_words = masked_words.to(words.device).bool()
        token = self.word_fc(self.mask_vec.to(words.dtype))
        words1 = torch.where(masked_words[..., None], token, words) + g["words_pos"]
        words1, valid1 = words1[:, :-1], words_valid[:, :-1]  # position i predicts word i + 1

        out = {"center": g["center"], "width": g["width"], "gauss_weight": gauss_weight,
               "masked_words": masked_words, "words_mask": valid1, "words_id": _field(batch, "words_id")}
        h, _ = self.trans.reconstruct(props, props_valid, words1, valid1, gauss_weight)
        out["words_logit"] = self.fc_rec(h)
        if self.use_negative:
            h, _ = self.trans.reconstruct(props, props_valid, words1, valid1, None)
            out["hard_neg_words_logit"] = self.fc_rec(h)
            if easy_negative:
                h, _ = self.trans.reconstruct(props, props_valid, words1, valid1, easy_negative_mask(gauss_weight))
                out["easy_neg_words_logit"] = self.fc_rec(h)
        return out

    # ------------------------------------------------------------------ losses
    def _ce(self, out, key):
        return reconstruction_nll(out[key], out["words_id"], out["words_mask"], self.label_smoothing)

    def reconstruction_loss(self, out):
        """L_rec (eq. 12) from ``forward_outputs``; without negatives, mean CE_p alone (release)."""
        ce_pos = self._ce(out, "words_logit")
        if "hard_neg_words_logit" not in out:
            return ce_pos.mean()
        return rec_loss(ce_pos, self._ce(out, "hard_neg_words_logit"))

    def contrastive_loss(self, out):
        """(L_IVC, hard part, easy part) (eq. 13) from ``forward_outputs``."""
        if not self.use_negative:
            raise RuntimeError("L_IVC needs MODEL.CNM.USE_NEGATIVE")
        return ivc_loss(self._ce(out, "words_logit"), self._ce(out, "hard_neg_words_logit"),
                        self._ce(out, "easy_neg_words_logit"), self.beta1, self.beta2)

    # ------------------------------------------------------------------ engine entry points
    def forward(self, batch, epoch=1, phase=None):
        """Eval mode: the moments. Train mode: the loss of update phase ``phase`` ("reconstructor": L_rec of a
        forward without the easy negative; "generator": L_IVC and its parts), or without ``phase`` every loss
        of one forward ("loss" = L_rec + L_IVC, for logging)."""
        if not self.training:
            g = self.generate(batch)
            moments = moments_from_gaussian(g["center"], g["width"]).unsqueeze(1)
            return {"moments": moments, "scores": torch.ones_like(moments[..., 0]),
                    "center": g["center"], "width": g["width"]}
        if phase == "reconstructor":
            return {"loss_rec": self.reconstruction_loss(self.forward_outputs(batch, easy_negative=False))}
        if phase == "generator":
            loss_ivc, hard, easy = self.contrastive_loss(self.forward_outputs(batch))
            return {"loss_ivc": loss_ivc, "loss_ivc_hard": hard, "loss_ivc_easy": easy}
        if phase is not None:
            raise ValueError(f"CNM has no update phase {phase!r}")
        out = self.forward_outputs(batch)
        loss_rec = self.reconstruction_loss(out)
        result = {"loss_rec": loss_rec}
        if self.use_negative:
            loss_ivc, hard, easy = self.contrastive_loss(out)
            result.update(loss_ivc=loss_ivc, loss_ivc_hard=hard, loss_ivc_easy=easy)
            result["loss"] = loss_rec + loss_ivc
        else:
            result["loss"] = loss_rec
        return result
