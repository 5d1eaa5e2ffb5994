"""Video clip features: HDF5 reading, validation, L2 normalisation and resampling."""
import os

import h5py
import numpy as np
import torch
import torch.nn.functional as F


class FeatureError(ValueError):
    """A feature file or entry that cannot be used, with the file and the video named."""


def resample_clips(feats, num_segments):
    """Average ``feats`` (n, D) into ``num_segments`` segments exactly as the official ``avgfeats``.

    Boundaries are ``round(arange(P + 1) / P * n)`` clamped to n - 1; segment i is the mean of
    rows [idx[i], idx[i+1]) or row idx[i] alone when that range is empty. Segments of the same length
    are averaged together (one gather and one ``mean`` per distinct length, a handful per video)
    instead of the official Python loop over segments; ``mean`` over the same rows in the same order
    gives the official values bit for bit.
    """
    n = feats.shape[0]
    idx = (torch.arange(0, num_segments + 1, 1.0) / num_segments * n).round().long().clamp(max=n - 1)
    start = idx[:-1]
    length = (idx[1:] - start).clamp(min=1)  # empty bin: the single row idx[i]
    lengths = length.unique()
    if len(lengths) == 1 and lengths[0] == 1:
        return feats.index_select(0, start)
    out = feats.new_empty(num_segments, feats.shape[1])
    for size in lengths.tolist():
        segments = (length == size).nonzero().squeeze(1)
        if size == 1:
            out[segments] = feats.index_select(0, start[segments])
            continue
        rows = (start[segments, None] + torch.arange(size)).reshape(-1)
        out[segments] = feats.index_select(0, rows).reshape(len(segments), size, -1).mean(dim=1)
    return out


def prepare_video_features(raw, num_segments):
    """Official per-video preprocessing: L2-normalise each raw clip, then resample to P segments."""
    return resample_clips(F.normalize(raw, dim=1), num_segments)


class HDF5FeatureReader:
    """Reads one video's raw clip features from an HDF5 file.

    The file is opened lazily, once per process (a DataLoader worker re-opens it after fork), and
    kept open: the official code re-opened it for every item.
    """

    def __init__(self, path, key=None, feat_dim=None):
        self.path = path
        self.key = key
        self.feat_dim = feat_dim
        self._file = None
        self._pid = None

    def _handle(self):
        if self._file is None or self._pid != os.getpid():
            try:
                self._file = h5py.File(self.path, "r")
            except OSError as err:
                raise FeatureError(f"{self.path}: cannot open feature file: {err}") from None
            self._pid = os.getpid()
        return self._file

    def video_ids(self):
        return set(self._handle().keys())

    def check_videos(self, vids):
        """Fail early, naming the file and the first offending ids, if any video has no features
        (or a group where the clip-feature array should be: a feature file of another layout)."""
        handle = self._handle()
        missing, wrong = [], []
        for v in vids:
            node = handle.get(v)
            if node is not None and self.key is not None:
                node = node.get(self.key) if isinstance(node, h5py.Group) else None
            if node is None:
                missing.append(v)
            elif not isinstance(node, h5py.Dataset):
                wrong.append(v)
        if missing:
            where = f"[{self.key!r}]" if self.key else ""
            raise FeatureError(
                f"{self.path}: {len(missing)} video(s) have no features{where}, e.g. {missing[:5]}")
        if wrong:
            raise FeatureError(f"{self.path}: video(s) {wrong[:5]}: expected an HDF5 dataset of clip features, "
                               f"found a group (wrong feature file for this annotation format?)")

    def read(self, vid):
        """Raw (num_clips, D) float32 tensor of ``vid``, validated."""
        handle = self._handle()
        node = handle.get(vid)
        if node is None:
            raise FeatureError(f"{self.path}: video {vid!r} not found")
        if self.key is not None:
            if not isinstance(node, h5py.Group) or self.key not in node:
                raise FeatureError(f"{self.path}: video {vid!r}: no {self.key!r} features under it")
            node = node[self.key]
        if not isinstance(node, h5py.Dataset):
            raise FeatureError(f"{self.path}: video {vid!r}: expected an HDF5 dataset of clip features, found a "
                               f"group (wrong feature file for this annotation format?)")
        array = np.asarray(node[()], dtype=np.float32)
        if array.ndim != 2 or array.shape[0] == 0:
            raise FeatureError(f"{self.path}: video {vid!r}: expected a (num_clips, D) array, got shape {array.shape}")
        if self.feat_dim is not None and array.shape[1] != self.feat_dim:
            raise FeatureError(
                f"{self.path}: video {vid!r}: feature dimension {array.shape[1]} does not match "
                f"MODEL.MMN.FEATPOOL.INPUT_SIZE {self.feat_dim}")
        if not np.isfinite(array).all():
            raise FeatureError(f"{self.path}: video {vid!r}: features contain NaN or Inf")
        return torch.from_numpy(array)

    def close(self):
        if self._file is not None:
            self._file.close()
            self._file = None

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_file"] = None  # h5py handles do not pickle; workers re-open
        state["_pid"] = None
        return state
