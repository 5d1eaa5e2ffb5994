"""QD-DETR's data: Moment-DETR's dataset and collate (``mmn/modeling/moment_detr/data.py``) plus the row of
all saliency labels its rank-contrastive loss reads (official ``qd_detr/start_end_dataset.py:180-224, 346-350,
374-375``): everything else (features, TEF, span labels, hard / easy saliency clips, the random calls and
their order) is the same official code, and ``get_saliency_labels_all`` draws nothing more than Moment-DETR's
``get_saliency_labels``.
"""
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch

from ..moment_detr.data import MomentDETRBatch, MomentDETRCollator, MomentDETRDataset, build_moment_detr_dataset, \
    pad_rows


def saliency_all_labels(clip_ids, scores, ctx_l):
    """float32 row of ctx_l zeros with each relevant clip's score summed over the annotators at its index.

    A relevant clip id >= ctx_l (a video whose features are a row shorter than its duration / 2) grows the
    row past the video: the official code grows it to ctx_l + 1 for one such id (``:197-201``; the batch then
    has a positive label on a padded clip, quirk 3), and crashes on a second one or on an id > ctx_l; here the
    row grows to max id + 1 in every case (the same row where the official code works)."""
    sums = np.sum(np.array(scores), 1)
    row = np.zeros(max(ctx_l, max(clip_ids) + 1), dtype=np.float32)
    row[np.asarray(clip_ids, dtype=np.int64)] = sums
    return torch.from_numpy(row)


@dataclass
class QDDETRBatch(MomentDETRBatch):
    """``MomentDETRBatch`` plus ``saliency_all_labels`` (B x W float32, zero-padded to the longest row; W is
    the longest video's clip count, or one more (``saliency_all_labels``); None without labels)."""

    saliency_all_labels: Optional[torch.Tensor] = None

    def targets(self):
        targets = super().targets()
        if targets is not None:
            targets["saliency_all_labels"] = self.saliency_all_labels
        return targets


class QDDETRCollator(MomentDETRCollator):
    """Items -> ``QDDETRBatch`` (the official ``start_end_collate`` with its ``saliency_all_labels`` padding)."""

    def __call__(self, items):
        batch = super().__call__(items)
        labels = None
        if items[0].get("saliency_all_labels") is not None:
            labels = pad_rows([it["saliency_all_labels"] for it in items])[0]
        return QDDETRBatch(**vars(batch), saliency_all_labels=labels)


class QDDETRDataset(MomentDETRDataset):
    """``MomentDETRDataset`` whose labelled items also carry ``saliency_all_labels``."""

    @classmethod
    def from_moment_detr(cls, dataset):
        """The same dataset (records, readers, options; nothing read again) as a QD-DETR dataset."""
        qd = cls.__new__(cls)
        qd.__dict__.update(vars(dataset))
        return qd

    def __getitem__(self, index):
        item = super().__getitem__(index)
        if self.load_labels:
            record = self.records[index]
            item["saliency_all_labels"] = saliency_all_labels(record.relevant_clip_ids, record.saliency_scores,
                                                              item["ctx_l"])
        return item

    def collator(self):
        return QDDETRCollator()


def build_qd_detr_dataset(entry, **options):
    """``QDDETRDataset`` of catalog ``entry``: the options of ``build_moment_detr_dataset``."""
    return QDDETRDataset.from_moment_detr(build_moment_detr_dataset(entry, **options))
