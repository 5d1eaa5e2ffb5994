"""MMN's opt-in feature cache (DATALOADER.FEATURE_CACHE_DIR): every video's features L2-normalised and resampled
to INPUT.NUM_PRE_CLIPS once, in one memory-mapped .npy file per split."""
import json
import os

import numpy as np
import torch

from ...data.features import prepare_video_features


def _source_signature(path):
    stat = os.stat(path)
    return f"{os.path.abspath(path)}|{stat.st_size}|{int(stat.st_mtime)}"


def resampled_cache_path(cache_dir, feat_file, num_segments, split_file):
    """The pre-resampled cache in ``cache_dir`` of the videos of one split (named by its annotation file)."""
    def stem(path):
        return os.path.splitext(os.path.basename(path))[0]
    return os.path.join(cache_dir, f"{stem(feat_file)}.{stem(split_file)}.resampled{num_segments}.npy")


class ResampledFeatureCache:
    """Features already L2-normalised and resampled, one (V, P, D) float32 .npy file memory-mapped
    (a read is a view; the batch's stack copies it), with a JSON index (video order, source signature)."""

    def __init__(self, path):
        self.path = path
        with open(path + ".json") as f:
            self.index = {vid: k for k, vid in enumerate(json.load(f)["vids"])}
        self._array = None

    def read(self, vid):
        if self._array is None:  # opened lazily: after the fork, in each loader worker
            # copy-on-write mapping: items are zero-copy views (the collator's stack is the one copy),
            # and writing to one never reaches the file
            self._array = np.load(self.path, mmap_mode="c")
        return torch.from_numpy(self._array[self.index[vid]])

    def __getstate__(self):
        return dict(self.__dict__, _array=None)


def build_resampled_cache(reader, vids, num_segments, cache_path):
    """Write ``prepare_video_features`` of every video to ``cache_path`` (+ ``.json`` index).

    Reused when its index lists the same videos for the same source file (path, size, mtime) and P;
    otherwise rebuilt into temporary files and renamed (array first, index last), so an interrupted
    build is never taken for a valid cache. Returns ``cache_path``.
    """
    vids = list(dict.fromkeys(vids))
    meta = {"source": _source_signature(reader.path), "num_segments": num_segments, "vids": vids}
    index = cache_path + ".json"
    if os.path.isfile(cache_path) and os.path.isfile(index):
        try:
            with open(index) as f:
                if json.load(f) == meta:
                    return cache_path
        except (OSError, ValueError):
            pass  # unreadable: rebuild
    os.makedirs(os.path.dirname(os.path.abspath(cache_path)), exist_ok=True)
    tmp = f"{cache_path}.tmp-{os.getpid()}.npy"
    try:
        first = prepare_video_features(reader.read(vids[0]), num_segments)
        array = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(len(vids), *first.shape))
        array[0] = first.numpy()
        for k, vid in enumerate(vids[1:], 1):
            array[k] = prepare_video_features(reader.read(vid), num_segments).numpy()
        array.flush()
        del array
        if os.path.exists(index):
            os.remove(index)  # the old index must not describe the new array
        os.replace(tmp, cache_path)
        with open(index + ".tmp", "w") as f:
            json.dump(meta, f)
        os.replace(index + ".tmp", index)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
        reader.close()
    return cache_path
