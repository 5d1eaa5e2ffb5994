"""Video clip features: HDF5 reading, validation, L2 normalisation and resampling."""
import os

import h5py
import numpy as np
import torch
import torch.nn.functional as F

from ..utils.errors import MMNError


class FeatureError(MMNError, ValueError):
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
    kept open: the official code re-opened it for every item. ``feat_dim``: the expected feature
    dimension (None: any); ``dim_key``: the config key it comes from, named in the errors.
    """

    def __init__(self, path, key=None, feat_dim=None, dim_key=None):
        self.path = path
        self.key = key
        self.feat_dim = feat_dim
        self.dim_key = dim_key
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

    def check_videos(self, vids):
        """Fail early, naming the file and the first offending ids, if any video has no features, a group
        where the clip-feature array should be (a feature file of another layout), or an array that is
        not (num_clips >= 1, feat_dim) numbers.

        Reads the HDF5 metadata only (shape and dtype), never the data: NaN and Inf are found when a
        video is read.
        """
        handle = self._handle()
        problems = {"missing": [], "group": [], "shape": [], "dim": []}
        for v in vids:
            node, problem = self._lookup(handle, v)
            if problem is None:
                problem = self._shape_problem(node.shape, node.dtype)
            if problem:
                problems[problem].append((v, node))
        for problem, found in problems.items():
            if found:
                raise FeatureError(self._message(found[:5], problem, len(found)))

    def _shape_problem(self, shape, dtype=None):
        """None for a usable (num_clips, D) array, else "shape" or "dim"."""
        if len(shape) != 2 or shape[0] == 0 or (dtype is not None and dtype.kind not in "fiu"):
            return "shape"
        if self.feat_dim is not None and shape[1] != self.feat_dim:
            return "dim"
        return None

    def _lookup(self, handle, vid):
        """(the clip-feature dataset of ``vid``, None), or (None, "missing" | "group")."""
        node = handle.get(vid)
        if node is not None and self.key is not None:
            node = node.get(self.key) if isinstance(node, h5py.Group) else None
        if node is None:
            return None, "missing"
        return (node, None) if isinstance(node, h5py.Dataset) else (None, "group")

    def _expected_dim(self):
        return f"{self.dim_key} {self.feat_dim}" if self.dim_key else f"the expected {self.feat_dim}"

    def _message(self, found, problem, total):
        """The error of ``problem`` for ``found`` [(vid, dataset or None), ...], the first of ``total``."""
        where = f"[{self.key!r}]" if self.key else ""
        vids = [vid for vid, _ in found]
        if problem == "missing":
            return f"{self.path}: {total} video(s) have no features{where}, e.g. {vids}"
        if problem == "group":
            return (f"{self.path}: video(s) {vids}: expected an HDF5 dataset of clip features{where}, found a "
                    f"group (wrong feature file for this annotation format?)")
        got = ", ".join(f"{vid!r}{where} shape {tuple(node.shape)} dtype {node.dtype}" for vid, node in found)
        if problem == "shape":
            return f"{self.path}: {total} video(s) are not a (num_clips >= 1, D) array of numbers, e.g. {got}"
        return (f"{self.path}: {total} video(s) have a feature dimension that does not match "
                f"{self._expected_dim()}, e.g. {got}")

    def read(self, vid):
        """Raw (num_clips, D) float32 tensor of ``vid``, validated."""
        node, problem = self._lookup(self._handle(), vid)
        if problem:
            raise FeatureError(self._message([(vid, None)], problem, 1))
        problem = self._shape_problem(node.shape, node.dtype)
        if problem:  # a video check_videos did not see (check_features=False, the predictor)
            raise FeatureError(self._message([(vid, node)], problem, 1))
        array = np.asarray(node[()], dtype=np.float32)
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
