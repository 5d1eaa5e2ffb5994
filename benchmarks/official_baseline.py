"""The official MMN algorithms, written plainly, as the baseline the benchmark measures side by side.

These follow what the official implementation (MCG-NJU/MMN) does, step by step, with its costs kept:
evaluation runs score fusion per video, then per sentence turns the non-zero cells into moments, sorts
them and runs a greedy NMS loop in Python, and updates the recall counts one query at a time; the
dataset keeps one N x N IoU map per sentence and tokenises one video at a time; ``__getitem__``
re-opens the HDF5 file for every item and resamples the clips with a Python loop. Nothing here is used
by the package: it exists only so that ``benchmarks/run.py`` can time both in the same run (see
``docs/MMN_SPEC.md``, "Known faults", for why these are slow).
"""
import json

import h5py
import torch
import torch.nn.functional as F

from mmn.data.catalog import builtin_entries

IOU_METRICS = {"charades": (0.5, 0.7), "activitynet": (0.3, 0.5, 0.7), "tacos": (0.1, 0.3, 0.5)}


# ----------------------------------------------------------------------------------------------
# evaluation
# ----------------------------------------------------------------------------------------------
def iou_with(candidates, gt):
    """IoU of each candidate (K x 2) with one ground-truth segment (2,), the official way."""
    start, end = candidates[:, 0], candidates[:, 1]
    s, e = gt[0].float(), gt[1].float()
    inter = end.min(e) - start.max(s)
    union = end.max(e) - start.min(s)
    return inter.clamp(min=0) / union


def map_to_candidates(score2d, num_clips, duration):
    """Non-zero cells of one N x N score map as moments in seconds [i*d/N, (j+1)*d/N], with their scores."""
    cells = score2d.nonzero()
    scores = score2d[cells[:, 0], cells[:, 1]]
    cells[:, 1] += 1
    moments = cells * duration / num_clips
    return moments, scores


def greedy_nms(moments, scores, thresh):
    """Sort by score, then walk the list once, suppressing later moments with IoU > thresh: Python loop."""
    scores, ranks = scores.sort(descending=True)
    moments = moments[ranks]
    suppressed = torch.zeros(len(ranks), dtype=torch.bool)
    for i in range(len(ranks) - 1):
        if suppressed[i]:
            continue
        overlap = iou_with(moments[i + 1:], moments[i]) > thresh
        suppressed[i + 1:][overlap] = True
    return moments[~suppressed]


def official_evaluate(predictions, durations, gt_moments, dataset_name, nms_thresh, contrastive_pow,
                      recall_metrics=(1, 5), keep_top=None):
    """The official ``evaluate()``: per video fusion, per sentence candidates + NMS + recall update.

    predictions: list (per video) of {"contrastive": S x N x N, "iou": S x N x N};
    durations: list of seconds; gt_moments: list of S x 2 float32 tensors.
    Returns the recall dict (fractions, keys "R@n,IoU@m") and, if ``keep_top`` is given, the list of
    the first ``keep_top`` kept moments of every query (for comparison only; not part of the timing's work
    apart from one slice per query). Like the official code it fails when fewer than max(recall_metrics)
    moments survive NMS (the random score maps of the benchmark never do that).
    """
    iou_metrics = torch.tensor(IOU_METRICS[dataset_name])
    recall_metrics = torch.tensor(recall_metrics)
    num_clips = predictions[0]["iou"].shape[-1]
    recall_x_iou = torch.zeros(len(recall_metrics), len(iou_metrics))
    num_instance = 0
    kept = [] if keep_top else None
    for idx, result2d in enumerate(predictions):
        score2d = torch.pow(result2d["contrastive"] * 0.5 + 0.5, contrastive_pow) * result2d["iou"]
        duration = durations[idx]
        for gt_moment, pred_score2d in zip(gt_moments[idx], score2d):
            num_instance += 1
            candidates, scores = map_to_candidates(pred_score2d, num_clips, duration)
            moments = greedy_nms(candidates, scores, nms_thresh)
            if kept is not None:
                kept.append(moments[:keep_top])
            for i, r in enumerate(recall_metrics):
                mious = iou_with(moments[:r], gt_moment)
                bools = mious[:, None].expand(r, len(iou_metrics)) >= iou_metrics
                recall_x_iou[i] += bools.any(dim=0)
    recall_x_iou /= num_instance
    result = {}
    for i, r in enumerate(recall_metrics.tolist()):
        for j, m in enumerate(iou_metrics.tolist()):
            result[f"R@{r},IoU@{m:.1f}"] = recall_x_iou[i, j].item()
    return result, kept


# ----------------------------------------------------------------------------------------------
# data
# ----------------------------------------------------------------------------------------------
def moment_to_iou2d(moment, num_clips, duration):
    """The N x N IoU map of one moment: candidates of an all-ones map, IoU with the moment."""
    candidates, _ = map_to_candidates(torch.ones(num_clips, num_clips), num_clips, duration)
    return iou_with(candidates, moment).reshape(num_clips, num_clips)


def resample_loop(feats, num_pre_clips):
    """Average ``feats`` (n x D) into ``num_pre_clips`` segments with a Python loop (the official avgfeats)."""
    num_src = feats.size(0)
    idxs = torch.arange(0, num_pre_clips + 1, 1.0) / num_pre_clips * num_src
    idxs = idxs.round().long().clamp(max=num_src - 1)
    segments = []
    for i in range(num_pre_clips):
        s, e = idxs[i], idxs[i + 1]
        segments.append(feats[s:e].mean(dim=0) if s < e else feats[s])
    return torch.stack(segments)


def read_video_features(feat_file, vid, num_pre_clips, fmt):
    """Open the HDF5 file, read one video, close it; L2-normalise and resample (done for every item)."""
    with h5py.File(feat_file, "r") as f:
        key = builtin_entries("")[f"{fmt}_test"].feat_key
        feat = f[vid][key][:] if key else f[vid][:]
    return resample_loop(F.normalize(torch.from_numpy(feat), dim=1), num_pre_clips)


class OfficialStyleDataset(torch.utils.data.Dataset):
    """The official dataset classes (Charades / ActivityNet / TACoS share them up to the adapter).

    Built from the annotation JSON: per video, per sentence a float32 moment and its N x N IoU map, all
    kept; the video's sentences tokenised together (padded to their longest). ``tokenizer`` is a loaded
    DistilBERT tokenizer (the official code loads it in the constructor; the benchmark times that too).
    """

    def __init__(self, ann_file, feat_file, fmt, num_pre_clips, num_clips, tokenizer):
        super().__init__()
        self.feat_file, self.fmt, self.num_pre_clips = feat_file, fmt, num_pre_clips
        with open(ann_file, "r") as f:
            annos = json.load(f)
        self.annos = []
        for vid, anno in annos.items():
            if fmt == "tacos":
                fps = anno["fps"]
                duration = anno["num_frames"] / fps
            else:
                fps, duration = 1, anno["duration"]
            moments, all_iou2d, sentences = [], [], []
            for timestamp, sentence in zip(anno["timestamps"], anno["sentences"]):
                if timestamp[0] < timestamp[1]:
                    if fmt == "tacos":
                        moment = torch.Tensor([max(timestamp[0] / fps, 0), min(timestamp[1] / fps, duration)])
                    else:
                        moment = torch.Tensor([max(timestamp[0], 0), min(timestamp[1], duration)])
                    moments.append(moment)
                    all_iou2d.append(moment_to_iou2d(moment, num_clips, duration))
                    sentences.append(sentence)
            encoded = tokenizer(sentences, return_tensors="pt", padding=True)
            self.annos.append({
                "vid": vid,
                "moment": torch.stack(moments),
                "iou2d": torch.stack(all_iou2d),
                "sentence": sentences,
                "query": encoded["input_ids"],
                "wordlen": encoded["attention_mask"].sum(dim=1),
                "duration": duration,
            })

    def __len__(self):
        return len(self.annos)

    def __getitem__(self, idx):
        a = self.annos[idx]
        feat = read_video_features(self.feat_file, a["vid"], self.num_pre_clips, self.fmt)
        return feat, a["query"], a["wordlen"], a["iou2d"], a["moment"], len(a["sentence"]), idx

    def get_duration(self, idx):
        return self.annos[idx]["duration"]

    def get_moment(self, idx):
        return self.annos[idx]["moment"]


def official_collate(batch):
    """The official collator: stack the features, keep everything else as per-video tuples."""
    feats, queries, wordlens, ious2d, moments, num_sentence, idxs = zip(*batch)
    return {"feats": torch.stack(feats).float(), "queries": queries, "wordlens": wordlens,
            "all_iou2d": ious2d, "moments": moments, "num_sentence": num_sentence}, idxs
