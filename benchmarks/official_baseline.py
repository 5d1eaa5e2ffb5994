"""The official MMN data pipeline, written plainly, as the baseline the benchmark measures side by side.

It follows what the official implementation (MCG-NJU/MMN) does, step by step, with its costs kept: the
dataset keeps one N x N IoU map per sentence and tokenises one video at a time; ``__getitem__``
re-opens the HDF5 file for every item and resamples the clips with a Python loop. Nothing here is used
by the package: it exists only so that ``benchmarks/run.py`` can time both in the same run (see
``docs/MMN_SPEC.md``, "Known faults", for why these are slow). The official algorithms themselves
(avgfeats, the IoU map, and the evaluation: per sentence candidates, a greedy NMS loop in Python and the
recall update one query at a time) are those of ``mmn.evaluation.reference``, which the tests check
the package against.
"""
import json

import h5py
import torch
import torch.nn.functional as F

from mmn.data.catalog import builtin_entries
from mmn.evaluation.reference import official_avgfeats, official_iou2d

# the official evaluate()'s IoU thresholds per dataset (its recall ranks are (1, 5))
IOU_METRICS = {"charades": (0.5, 0.7), "activitynet": (0.3, 0.5, 0.7), "tacos": (0.1, 0.3, 0.5)}


# ----------------------------------------------------------------------------------------------
# data (the evaluation is mmn.evaluation.reference.official_evaluate)
# ----------------------------------------------------------------------------------------------
def read_video_features(feat_file, vid, num_pre_clips, fmt):
    """Open the HDF5 file, read one video, close it; L2-normalise and resample (done for every item)."""
    with h5py.File(feat_file, "r") as f:
        key = builtin_entries("")[f"{fmt}_test"].feat_key
        feat = f[vid][key][:] if key else f[vid][:]
    return official_avgfeats(F.normalize(torch.from_numpy(feat), dim=1), num_pre_clips)


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
                    all_iou2d.append(official_iou2d(moment, duration, num_clips))
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
