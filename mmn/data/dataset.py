"""The dataset protocol: what the engine, the evaluation, the plots and the results files read of a model's
dataset (``GroundingDataset``), and the base of the datasets whose item is one query (``PerQueryDataset``).

A model's ``build_dataset`` returns a ``GroundingDataset``; the model registry's dispatch sets its ``split``
(the catalog split it was built from: the evaluation reads that entry's IoU thresholds). Queries are
numbered 0..num_queries-1 in dataset order; every batch the dataset's ``collator()`` makes carries
``query_indices`` (the query index of each output row) and ``to(device, non_blocking)``.
"""
import torch

from .features import HDF5FeatureReader


class GroundingDataset(torch.utils.data.Dataset):
    """Base of every model's dataset. Items may be videos (a video with all its sentences) or queries
    (``PerQueryDataset``); the per-query accessors below are what the shared layers read."""

    ann_file = None  # the annotation file (logged with the recall table)
    split = None     # the catalog split name, set by mmn.modeling.build_dataset

    def collator(self):
        """The collate function of the loaders: items -> one batch of the model's kind."""
        raise NotImplementedError(f"{type(self).__name__} must implement collator")

    @property
    def num_queries(self):
        raise NotImplementedError(f"{type(self).__name__} must implement num_queries")

    def query_moments(self):
        """(num_queries, 2) ground-truth moments in seconds (evaluation only for weakly supervised models)."""
        raise NotImplementedError(f"{type(self).__name__} must implement query_moments")

    def query_durations(self):
        """(num_queries,) float64 duration in seconds of each query's video."""
        raise NotImplementedError(f"{type(self).__name__} must implement query_durations")

    def query_video_ids(self):
        """The video id of each query."""
        raise NotImplementedError(f"{type(self).__name__} must implement query_video_ids")

    def query_sentences(self):
        """The sentence of each query."""
        raise NotImplementedError(f"{type(self).__name__} must implement query_sentences")


class PerQueryDataset(GroundingDataset):
    """Base of a dataset whose item is one query. Subclasses set ``vids`` and ``sentences`` (per
    query), ``durations`` (Q seconds, float64) and ``moments`` (Q x 2 seconds), then call ``open_features``."""

    def open_features(self, feat_file, feat_key=None, feat_dim=None, dim_key=None, check=True):
        """The HDF5 reader of the queries' videos; ``check``: every video checked now, from the file's
        metadata, then the file closed again (each loader worker re-opens it)."""
        self.features = HDF5FeatureReader(feat_file, key=feat_key or None, feat_dim=feat_dim, dim_key=dim_key)
        if check:
            self.features.check_videos(sorted(set(self.vids)))
            self.features.close()

    def __len__(self):
        return len(self.vids)

    @property
    def num_queries(self):
        return len(self.vids)

    def query_moments(self):
        return torch.as_tensor(self.moments)

    def query_durations(self):
        return torch.as_tensor(self.durations)

    def query_video_ids(self):
        return list(self.vids)

    def query_sentences(self):
        return list(self.sentences)
