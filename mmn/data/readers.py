"""Feature readers: an id (video or query) -> float32 array (T x D), plus cheap metadata for build-time checks.

Three layouts:

* ``NpzVideoFolders``, the official QVHighlights release (jayleicn/moment_detr): one ``{vid}.npz`` (key
  ``features``) per video in each of several folders (``slowfast_features/`` 2304-d, ``clip_features/``
  512-d, ...). As the official ``StartEndDataset._get_video_feat_by_vid``: per folder the rows up to
  ``max_len``, in float32, each row L2-normalised as x / (||x|| + 1e-5) in numpy
  (``l2_normalize_rows``; not ``F.normalize``, which clamps the norm instead of adding to it); then every
  folder cut to the shortest and the folders concatenated in the given order.
* ``NpzTextFolder``: per-query text features ``qid{qid}.npz`` (key ``last_hidden_state``, tokens x D), cut
  to ``max_len`` tokens and normalised the same way (the official ``_get_query_feat_by_qid``).
* ``HDF5VideoFeatures``: the framework's own HDF5 layout (mmn-extract's output, ``f[vid]`` = T x D;
  ``mmn.data.features.HDF5FeatureReader``), with the same truncation and normalisation.

Every reader has ``read(key, owner=None)`` (a torch float32 tensor, T x D) and ``check(keys, owners=None)``,
which looks at every file's header (never its data) and raises one ``FeatureError`` naming the folder, the
first offending ids and the records that need them; ``owners`` maps an id to its record (e.g.
``"ann.jsonl qid 12"``). ``feature_dim`` is known after ``check`` (or the first read). ``build_video_reader`` /
``build_text_reader`` pick the reader of a catalog entry. Nothing read can run code: ``np.load`` with
``allow_pickle=False``.
"""
import os
import zipfile

import numpy as np
import torch

from ..utils.errors import ConfigError
from .features import FeatureError, HDF5FeatureReader

L2_EPS = 1e-5
VIDEO_KEY = "features"
TEXT_KEY = "last_hidden_state"
MAX_LISTED = 5  # ids named in one error


def l2_normalize_rows(array, eps=L2_EPS):
    """The official ``l2_normalize_np_array`` (moment_detr ``utils/basic_utils.py``): x / (||x|| + eps) per
    row, in the array's dtype (float32 stays float32)."""
    return array / (np.linalg.norm(array, axis=-1, keepdims=True) + eps)


def _where(owner):
    return f" (needed by {owner})" if owner else ""


def load_npz_array(path, key, what, owner=None):
    """Array ``key`` of the ``.npz`` at ``path`` (``what``: the id, for the errors); never unpickles."""
    try:
        loaded = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise FeatureError(f"{os.path.dirname(path) or '.'}: no feature file {os.path.basename(path)} for "
                           f"{what}{_where(owner)}") from None
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as err:
        raise FeatureError(f"{path}: {what}: not a readable .npz archive ({err}){_where(owner)}") from None
    if not isinstance(loaded, np.lib.npyio.NpzFile):
        raise FeatureError(f"{path}: {what}: a single .npy array, expected an .npz archive with key {key!r}"
                           f"{_where(owner)}")
    with loaded:
        if key not in loaded.files:
            raise FeatureError(f"{path}: {what}: no array {key!r} in the archive (it has {loaded.files})"
                               f"{_where(owner)}")
        try:
            return loaded[key]
        except (ValueError, OSError, EOFError, zipfile.BadZipFile) as err:
            raise FeatureError(f"{path}: {what}: array {key!r} unreadable ({err}){_where(owner)}") from None


def npz_header(path, key):
    """(shape, dtype) of array ``key`` in the ``.npz`` at ``path``, from the member's header alone; None when the
    file is missing. Raises FeatureError for an unreadable archive or a missing key."""
    if not os.path.isfile(path):
        return None
    try:
        with zipfile.ZipFile(path) as archive, archive.open(key + ".npy") as member:
            version = np.lib.format.read_magic(member)
            read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, _, dtype = read(member)
            return shape, dtype
    except KeyError:
        raise FeatureError(f"{path}: no array {key!r} in the archive") from None
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as err:
        raise FeatureError(f"{path}: not a readable .npz archive ({err})") from None


def _array_problem(shape, dtype):
    """None for a usable (rows >= 1, D >= 1) array of numbers, else a description."""
    if len(shape) != 2 or shape[0] == 0 or shape[1] == 0 or dtype.kind not in "fiu":
        return f"shape {tuple(shape)} dtype {dtype}, expected a (rows >= 1, D) array of numbers"
    return None


def _listed(ids, owners):
    shown = [f"{i!r}{_where(owners.get(i) if owners else None)}" for i in ids[:MAX_LISTED]]
    return ", ".join(shown) + (f" and {len(ids) - MAX_LISTED} more" if len(ids) > MAX_LISTED else "")


def _prepare(array, max_len, normalize):
    """Official order: rows up to max_len, float32, then normalise."""
    array = array[:max_len].astype(np.float32)
    return l2_normalize_rows(array) if normalize else array


def _check_finite(array, where):
    if not np.isfinite(array).all():
        raise FeatureError(f"{where}: features contain NaN or Inf")


class _NpzFolders:
    """Folders of ``{prefix}{id}.npz`` sharing one array key; the per-folder checks of the readers below."""

    def __init__(self, folders, key, prefix, kind, max_len, normalize, feat_dim, dim_key):
        self.folders = [os.fspath(f) for f in folders]
        if not self.folders:
            raise ConfigError("no feature folder given")
        self.key, self.prefix, self.kind = key, prefix, kind
        self.max_len = max_len
        self.normalize = normalize
        self.feat_dim = feat_dim      # expected size of a row of the result (None: any)
        self.dim_key = dim_key        # the config key of feat_dim, named in errors
        self.dims = None              # per folder, known after check() or the first read

    def file_path(self, folder, ident):
        """The file of ``ident`` in ``folder``."""
        return os.path.join(folder, f"{self.prefix}{ident}.npz")

    def check(self, idents, owners=None):
        """Every id has a usable array in every folder, with one row size per folder (and their sum
        ``feat_dim`` when given): read from the file headers only. Returns the per-folder row sizes."""
        idents = list(dict.fromkeys(idents))
        dims = []
        for folder in self.folders:
            missing, sizes = [], {}
            for ident in idents:
                path = self.file_path(folder, ident)
                owner = owners.get(ident) if owners else None
                try:
                    header = npz_header(path, self.key)
                except FeatureError as err:
                    raise FeatureError(f"{err}{_where(owner)}") from None
                if header is None:
                    missing.append(ident)
                    continue
                problem = _array_problem(*header)
                if problem:
                    raise FeatureError(f"{path}: {problem}{_where(owner)}")
                sizes.setdefault(int(header[0][1]), ident)
            if missing:
                raise FeatureError(f"{folder}: no feature file ({self.prefix}{{id}}.npz) for {len(missing)} "
                                   f"{self.kind}(s): {_listed(missing, owners)}")
            if len(sizes) > 1:
                shown = ", ".join(f"{ident!r}: {size}" for size, ident in list(sizes.items())[:MAX_LISTED])
                raise FeatureError(f"{folder}: {self.kind}s with different feature sizes ({shown})")
            dims.extend(sizes)
        self._set_dims(dims)
        return list(self.dims)

    def _set_dims(self, dims):
        if self.feat_dim is not None and sum(dims) != self.feat_dim:
            parts = " + ".join(f"{d} ({os.path.basename(os.path.normpath(f))})" for d, f in zip(dims, self.folders))
            expected = f"{self.dim_key} {self.feat_dim}" if self.dim_key else f"the expected {self.feat_dim}"
            raise FeatureError(f"{', '.join(self.folders)}: features of size {parts} = {sum(dims)} do not match "
                               f"{expected}")
        self.dims = list(dims)

    def _read_folder(self, folder, ident, owner):
        path = self.file_path(folder, ident)
        array = load_npz_array(path, self.key, f"{self.kind} {ident!r}", owner)
        problem = _array_problem(array.shape, array.dtype)
        if problem:
            raise FeatureError(f"{path}: {problem}{_where(owner)}")
        return _prepare(array, self.max_len, self.normalize)

    def close(self):
        """Nothing stays open (kept for the reader interface)."""

    @property
    def feature_dim(self):
        return sum(self.dims) if self.dims is not None else self.feat_dim


class NpzVideoFolders(_NpzFolders):
    """The official QVHighlights video features: ``{vid}.npz`` (key ``features``) in each of ``folders``,
    each normalised per row, cut to the shortest and concatenated in the folders' order (module docstring).

    ``max_len``: rows kept per folder (the official max_v_l; None: all); ``normalize``: the official
    per-folder L2 normalisation (``--no_norm_vfeat`` turns it off); ``feat_dim``: expected size of a
    concatenated row (``dim_key`` names its config key).
    """

    def __init__(self, folders, key=VIDEO_KEY, max_len=None, normalize=True, feat_dim=None, dim_key=None):
        super().__init__(folders, key, "", "video", max_len, normalize, feat_dim, dim_key)

    def check_videos(self, vids, owners=None):
        return self.check(vids, owners)

    def read_numpy(self, vid, owner=None):
        parts = [self._read_folder(folder, vid, owner) for folder in self.folders]
        if self.dims is None:
            self._set_dims([p.shape[1] for p in parts])
        elif [p.shape[1] for p in parts] != self.dims:
            raise FeatureError(f"video {vid!r}: feature sizes {[p.shape[1] for p in parts]} in "
                               f"{self.folders}, the other videos have {self.dims}{_where(owner)}")
        rows = min(len(p) for p in parts)  # "some features are slightly longer than the others"
        array = np.concatenate([p[:rows] for p in parts], axis=1) if len(parts) > 1 else parts[0]
        _check_finite(array, f"{', '.join(self.file_path(f, vid) for f in self.folders)}")
        return array

    def read(self, vid, owner=None):
        """(T, D) float32 tensor of ``vid``: T = the shortest folder's rows (at most max_len)."""
        return torch.from_numpy(self.read_numpy(vid, owner))


class NpzTextFolder(_NpzFolders):
    """Per-query text features ``qid{qid}.npz`` (key ``last_hidden_state``, tokens x D) in ``folder``: the
    first ``max_len`` tokens (the official max_q_l), each normalised as the video rows (``normalize``)."""

    def __init__(self, folder, key=TEXT_KEY, max_len=None, normalize=True, feat_dim=None, dim_key=None):
        super().__init__([folder], key, "qid", "query", max_len, normalize, feat_dim, dim_key)
        self.folder = self.folders[0]

    def check_queries(self, qids, owners=None):
        return self.check(qids, owners)

    def read_numpy(self, qid, owner=None):
        array = self._read_folder(self.folder, qid, owner)
        if self.dims is None:
            self._set_dims([array.shape[1]])
        elif array.shape[1] != self.dims[0]:
            raise FeatureError(f"{self.file_path(self.folder, qid)}: feature size {array.shape[1]}, the other queries "
                               f"have {self.dims[0]}{_where(owner)}")
        _check_finite(array, self.file_path(self.folder, qid))
        return array

    def read(self, qid, owner=None):
        """(L, D) float32 tensor of query ``qid``: L = its tokens, at most max_len."""
        return torch.from_numpy(self.read_numpy(qid, owner))


class HDF5VideoFeatures:
    """The framework's HDF5 layout (``f[vid]``, or ``f[vid][key]``) read like ``NpzVideoFolders``: rows up to
    ``max_len``, float32, per-row L2-normalised (x / (||x|| + 1e-5)) when ``normalize``."""

    def __init__(self, path, key=None, max_len=None, normalize=True, feat_dim=None, dim_key=None):
        self.reader = HDF5FeatureReader(path, key=key, feat_dim=feat_dim, dim_key=dim_key)
        self.path = path
        self.max_len = max_len
        self.normalize = normalize
        self.feat_dim = feat_dim

    def check_videos(self, vids, owners=None):
        """Every video present, (rows >= 1, feat_dim): from the file's metadata; the file is closed again."""
        vids = list(dict.fromkeys(vids))
        try:
            self.reader.check_videos(vids)
        except FeatureError as err:
            first = next((v for v in vids if repr(v) in str(err)), None)
            if owners and first is not None and owners.get(first):
                raise FeatureError(f"{err} (video {first!r} needed by {owners[first]})") from None
            raise
        finally:
            self.reader.close()

    def read_numpy(self, vid, owner=None):
        try:
            array = self.reader.read(vid).numpy()
        except FeatureError as err:
            if owner:
                raise FeatureError(f"{err}{_where(owner)}") from None
            raise
        if self.feat_dim is None:
            self.feat_dim = array.shape[1]
        return _prepare(array, self.max_len, self.normalize)

    def read(self, vid, owner=None):
        return torch.from_numpy(self.read_numpy(vid, owner))

    def close(self):
        self.reader.close()

    @property
    def feature_dim(self):
        return self.feat_dim


def build_video_reader(entry, max_len=None, normalize=True, feat_dim=None, dim_key=None):
    """The video reader of catalog ``entry``: its ``video_feature_dirs`` (official npz layout) if any, else its
    HDF5 ``feat_file`` (``feat_key``)."""
    if entry.video_feature_dirs:
        return NpzVideoFolders(entry.video_feature_dirs, max_len=max_len, normalize=normalize, feat_dim=feat_dim,
                               dim_key=dim_key)
    if not entry.feat_file:
        raise ConfigError(f"{entry.source}: dataset split {entry.name!r} names no video features "
                          "(feat_file or video_feature_dirs)")
    return HDF5VideoFeatures(entry.feat_file, key=entry.feat_key, max_len=max_len, normalize=normalize,
                             feat_dim=feat_dim, dim_key=dim_key)


def build_text_reader(entry, max_len=None, normalize=True, feat_dim=None, dim_key=None):
    """The per-query text feature reader of catalog ``entry`` (its ``text_feature_dir``)."""
    if not entry.text_feature_dir:
        raise ConfigError(f"{entry.source}: dataset split {entry.name!r} has no text_feature_dir (precomputed "
                          "per-query text features qid{qid}.npz)")
    return NpzTextFolder(entry.text_feature_dir, max_len=max_len, normalize=normalize, feat_dim=feat_dim,
                         dim_key=dim_key)
