"""What the datasets of one item per (video, sentence) query share (CNM, 2D-TAN)."""
import torch

from .features import HDF5FeatureReader


class PerQueryDataset(torch.utils.data.Dataset):
    """Base of a dataset whose item is one query. Subclasses set ``vids`` and ``sentences`` (per query),
    ``durations`` (Q seconds, float64) and ``moments`` (Q x 2 seconds), then call ``open_features``."""

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
        """(num_queries, 2) ground-truth moments, seconds (evaluation only for weakly supervised models)."""
        return torch.as_tensor(self.moments)

    def query_durations(self):
        return torch.as_tensor(self.durations)

    def query_video_ids(self):
        return list(self.vids)

    def query_sentences(self):
        return list(self.sentences)
