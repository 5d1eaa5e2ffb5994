"""MMN: Mutual Matching Network (AAAI 2022)."""
import torch
import torch.nn.functional as F

from ...utils.errors import ConfigError
from ...data.features import prepare_video_features
from ...structures import cell_iou_targets
from ...structures.moment_map import sparse_map_lengths
from ...utils import comm
from ..base import GroundingModel, RankedMoments, keep_first_shard_stats
from ..registry import register_model
from .data import MMNBatch, MMNDataset
from .feat2d import build_feat2d
from .featpool import build_featpool
from .loss import mutual_matching_loss, scaled_iou_bce_loss
from .optim import build_mmn_optimizer
from .proposal_conv import ProposalConv
from .ranking import fused_top_moments
from .text_encoder import build_text_encoder
from .tokenization import load_tokenizer


def per_video_cosine(sent_feat, video_maps, video_index, num_sentences):
    """Cosine of each sentence with every cell of its own video's map.

    sent_feat: S x C; video_maps: B x C x N x N -> S x N x N. Sentences are laid out as a padded
    B x max_sent x C block so that one batched matmul covers the batch.
    """
    b, c, n, _ = video_maps.shape
    sents = F.normalize(sent_feat, dim=1)
    maps = F.normalize(video_maps, dim=1).reshape(b, c, n * n)
    offsets = torch.cumsum(num_sentences, 0) - num_sentences
    slot = torch.arange(len(sents), device=sents.device) - offsets[video_index]
    padded = sents.new_zeros(b, int(num_sentences.max()), c)
    padded[video_index, slot] = sents
    scores = torch.bmm(padded, maps)  # B x max_sent x NN
    return scores[video_index, slot].reshape(-1, n, n)


def check_geometry(cfg):
    """INPUT.NUM_PRE_CLIPS, FEATPOOL.KERNEL_SIZE, NUM_CLIPS and FEAT2D.POOLING_COUNTS must fit together:
    the feature pool (stride NUM_PRE_CLIPS // NUM_CLIPS) must give NUM_CLIPS clips, and every pooling
    step of the sparse map must fill its diagonal of the NUM_CLIPS x NUM_CLIPS map."""
    mmn = cfg.MODEL.MMN
    pre, n, kernel, counts = cfg.INPUT.NUM_PRE_CLIPS, mmn.NUM_CLIPS, mmn.FEATPOOL.KERNEL_SIZE, list(mmn.FEAT2D.POOLING_COUNTS)
    keys = "INPUT.NUM_PRE_CLIPS, MODEL.MMN.FEATPOOL.KERNEL_SIZE, MODEL.MMN.NUM_CLIPS"
    if n < 1 or pre < n or kernel < 1 or kernel > pre:
        raise ConfigError(f"{keys} = {pre}, {kernel}, {n}: need 1 <= NUM_CLIPS <= NUM_PRE_CLIPS and "
                          "1 <= KERNEL_SIZE <= NUM_PRE_CLIPS")
    stride = pre // n
    pooled = (pre - kernel) // stride + 1
    if pooled != n:
        raise ConfigError(f"{keys} = {pre}, {kernel}, {n}: the feature pool (kernel {kernel}, stride NUM_PRE_CLIPS // "
                          f"NUM_CLIPS = {stride}) gives (NUM_PRE_CLIPS - KERNEL_SIZE) // stride + 1 = {pooled} clips, "
                          f"not NUM_CLIPS = {n} (the official configs use KERNEL_SIZE = stride, e.g. NUM_PRE_CLIPS "
                          f"{n * 2}, KERNEL_SIZE 2)")
    if mmn.FEAT2D.NAME not in ("pool", "conv"):
        raise ConfigError(f"MODEL.MMN.FEAT2D.NAME must be 'pool' or 'conv', got {mmn.FEAT2D.NAME!r}")
    if not counts or any(c < 0 for c in counts) or counts[0] < 1:
        raise ConfigError(f"MODEL.MMN.FEAT2D.POOLING_COUNTS {counts}: need non-negative counts, the first >= 1")
    problem = sparse_map_lengths(counts, n)
    if problem:
        raise ConfigError(f"MODEL.MMN.FEAT2D.POOLING_COUNTS {counts} with MODEL.MMN.NUM_CLIPS {n}: {problem}")


def shard_group_tensors(model, shards):
    """``model.training_tensors`` of every shard of one process's batch, concatenated (video indices renumbered):
    each shard is encoded on its own (its own BatchNorm statistics, the first shard's running statistics
    kept), then the losses see every shard's sentences and moments (GLOBAL_NEGATIVES)."""
    parts, saved, offset = [], None, 0
    for shard in shards:
        iou_scores, map2d, sent_feat, iou1d, moments, video_index = model.training_tensors(shard)
        parts.append((iou_scores, map2d, sent_feat, iou1d, moments, video_index + offset))
        offset += map2d.shape[0]
        saved = keep_first_shard_stats(model, saved)
    return tuple(torch.cat(column) for column in zip(*parts))


def global_batch(iou_scores, map2d, sent_feat, iou1d, moments, video_index):
    """The per-sentence and per-video training tensors of every process, concatenated in rank order with
    their gradients flowing back to their owners (``comm.gather_with_grad``); video indices renumbered.

    Every process then computes the same loss, that of the global batch; DDP's mean of the processes'
    gradients of it is its gradient."""
    offset = sum(comm.all_gather_objects(map2d.shape[0])[:comm.get_rank()])
    return (comm.gather_with_grad(iou_scores), comm.gather_with_grad(map2d), comm.gather_with_grad(sent_feat),
            comm.gather_with_grad(iou1d), comm.gather_with_grad(moments), comm.gather_with_grad(video_index + offset))


@register_model("MMN")
class MMN(GroundingModel):
    def __init__(self, cfg):
        super().__init__(cfg)
        mmn = cfg.MODEL.MMN
        self.featpool = build_featpool(cfg)
        self.feat2d = build_feat2d(cfg)
        self.proposal_conv = ProposalConv(mmn.FEATPOOL.HIDDEN_SIZE, mmn.PREDICTOR.HIDDEN_SIZE, mmn.PREDICTOR.KERNEL_SIZE,
                                          mmn.PREDICTOR.NUM_STACK_LAYERS, mmn.JOINT_SPACE_SIZE, self.feat2d.mask2d,
                                          tile_rows=mmn.PREDICTOR.TILE_ROWS)
        self.text_encoder = build_text_encoder(cfg)
        loss = mmn.LOSS
        self.min_iou, self.max_iou = loss.MIN_IOU, loss.MAX_IOU
        self.contrastive_weight = loss.CONTRASTIVE_WEIGHT
        self.contrastive_args = dict(
            top_k=loss.NUM_POSTIVE_VIDEO_PROPOSAL, tau_video=loss.TAU_VIDEO, tau_sent=loss.TAU_SENT,
            margin=loss.MARGIN, negative_video_iou=loss.NEGATIVE_VIDEO_IOU, sent_removal_iou=loss.SENT_REMOVAL_IOU)
        self.freeze_bert_epochs = cfg.SOLVER.FREEZE_BERT
        self.only_iou_epochs = cfg.SOLVER.ONLY_IOU
        self.nms_thresh, self.contrastive_pow = cfg.TEST.NMS_THRESH, cfg.TEST.CONTRASTIVE_SCORE_POW
        self.global_negatives = loss.GLOBAL_NEGATIVES

    # ------------------------------------------------------------------ the model contract (mmn/modeling/base.py)
    @classmethod
    def check_config(cls, cfg):
        check_geometry(cfg)

    @classmethod
    def feature_dim(cls, cfg):
        return cfg.MODEL.MMN.FEATPOOL.INPUT_SIZE, "MODEL.MMN.FEATPOOL.INPUT_SIZE"

    @classmethod
    def build_dataset(cls, cfg, entry, is_train=False):
        dim, key = cls.feature_dim(cfg)
        return MMNDataset(entry.ann_file, entry.feat_file, entry.format, cfg.INPUT.NUM_PRE_CLIPS,
                          cfg.MODEL.MMN.TEXT_ENCODER.PRETRAINED, feat_dim=dim, feat_dim_key=key,
                          feature_cache_dir=cfg.DATALOADER.FEATURE_CACHE_DIR, feat_key=entry.feat_key)

    @classmethod
    def build_query_batch(cls, cfg, features, duration, sentences):
        encoded = load_tokenizer(cfg.MODEL.MMN.TEXT_ENCODER.PRETRAINED)(list(sentences), padding=True,
                                                                          return_tensors="pt")
        count = len(sentences)
        return MMNBatch(
            feats=prepare_video_features(features, cfg.INPUT.NUM_PRE_CLIPS)[None],
            queries=encoded["input_ids"],
            wordlens=encoded["attention_mask"].sum(dim=1),
            moments=torch.zeros(count, 2),
            num_sentences=torch.tensor([count]),
            durations=torch.tensor([duration], dtype=torch.float64),
            indices=torch.tensor([0]),
            query_indices=torch.arange(count),
        )

    def build_optimizer(self, cfg):
        """The official AdamW (the text encoder's BERT at lr x 0.1) and MultiStepLR (``optim.py``)."""
        return build_mmn_optimizer(cfg, self)

    def training_inputs(self, batch):
        """The contract's shards; with GLOBAL_NEGATIVES the shards of a process form one loss: one forward of
        the whole list (``shard_group_tensors``)."""
        if self.global_negatives and isinstance(batch, list) and len(batch) > 1:
            if comm.get_world_size() > 1:
                raise ConfigError("MODEL.MMN.LOSS.GLOBAL_NEGATIVES under torchrun takes one shard per process: "
                                  "set SOLVER.NUM_SHARDS 0, or as many shards as processes")
            return [batch]
        return super().training_inputs(batch)

    def rank_moments(self, outputs, batch, topk):
        """Official score fusion, then greedy NMS over the fused map (TEST.NMS_THRESH)."""
        fused, moments, scores = fused_top_moments(outputs["contrastive"], outputs["iou"],
                                                   batch.sentence_durations.cpu(), self.nms_thresh,
                                                   self.contrastive_pow, k=topk)
        return RankedMoments(moments, scores, fused)

    @property
    def mask2d(self):
        return self.feat2d.mask2d

    def iou_targets(self, batch):
        """S x P IoU of every valid cell (row-major) with each sentence's moment; the official N x N
        targets at those cells, bit for bit, computed per batch on the model's device."""
        rows, cols = self.mask2d.nonzero(as_tuple=True)
        return cell_iou_targets(batch.moments, batch.sentence_durations, rows, cols, self.mask2d.shape[0])

    def set_epoch(self, epoch):
        """Epoch-dependent state (1-based): the text encoder's BERT is frozen while epoch <= FREEZE_BERT."""
        self.text_encoder.bert.requires_grad_(epoch > self.freeze_bert_epochs)

    def encode(self, batch):
        """Moment maps and sentence features: (map2d_contrastive, map2d_iou, sent_feat, sent_feat_iou)."""
        map2d = self.feat2d(self.featpool(batch.feats))
        map2d_contrastive, map2d_iou = self.proposal_conv(map2d)
        sent_feat, sent_feat_iou = self.text_encoder(batch.queries, batch.wordlens)
        return map2d_contrastive, map2d_iou, sent_feat, sent_feat_iou

    def training_tensors(self, batch):
        """What the losses read: (iou scores S x N x N, contrastive maps B x C x N x N, sentence features S x C,
        IoU targets S x P, moments S x 2, video index S)."""
        map2d_contrastive, map2d_iou, sent_feat, sent_feat_iou = self.encode(batch)
        mask = self.mask2d.to(sent_feat.dtype)
        iou_scores = per_video_cosine(sent_feat_iou, map2d_iou, batch.video_index, batch.num_sentences)
        iou_scores = (iou_scores * 10).sigmoid() * mask
        return iou_scores, map2d_contrastive, sent_feat, self.iou_targets(batch), batch.moments, batch.video_index

    def forward(self, batch, epoch=1):
        """Training: dict of losses (loss_vid and loss_sent already weighted, "loss" the total); a list of
        shards (GLOBAL_NEGATIVES with several shards in one process) is one loss over all of them.
        Evaluation: dict with S x N x N "contrastive" and "iou" score maps (zero outside mask2d)."""
        if self.training:
            if isinstance(batch, list):
                tensors = shard_group_tensors(self, batch)
            else:
                tensors = self.training_tensors(batch)
            if self.global_negatives:  # every process computes the loss of the whole global batch
                tensors = global_batch(*tensors)
            return self.losses(*tensors, epoch=epoch)
        map2d_contrastive, map2d_iou, sent_feat, sent_feat_iou = self.encode(batch)
        mask = self.mask2d.to(sent_feat.dtype)
        video_index = batch.video_index
        iou_scores = (per_video_cosine(sent_feat_iou, map2d_iou, video_index, batch.num_sentences) * 10).sigmoid() * mask
        contrastive = per_video_cosine(sent_feat, map2d_contrastive, video_index, batch.num_sentences) * mask
        return {"contrastive": contrastive, "iou": iou_scores}

    def losses(self, iou_scores, map2d_contrastive, sent_feat, iou1d, moments, video_index, epoch=1):
        """The official losses of a batch's training tensors."""
        # losses in fp32 even under autocast (BCE is not autocast-safe; exp/log want the range)
        with torch.autocast(device_type=iou_scores.device.type, enabled=False):
            loss_iou = scaled_iou_bce_loss(iou_scores.float(), iou1d, self.mask2d, self.min_iou, self.max_iou)
            loss_vid, loss_sent = mutual_matching_loss(map2d_contrastive.float(), sent_feat.float(), iou1d,
                                                       moments, video_index, self.mask2d, **self.contrastive_args)
        loss_vid, loss_sent = loss_vid * self.contrastive_weight, loss_sent * self.contrastive_weight
        contrastive_scale = 1.0 if epoch <= self.only_iou_epochs else 0.01
        loss = loss_iou + (loss_sent + loss_vid) * contrastive_scale
        return {"loss": loss, "loss_iou": loss_iou, "loss_vid": loss_vid, "loss_sent": loss_sent}
