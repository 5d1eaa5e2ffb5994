"""A synthetic temporal-grounding dataset in the exact Charades-STA formats.

The generator plants a signal that only a model reading the sentence can exploit:

* A fixed vocabulary of ``ACTIONS`` (short everyday phrases made of common English words, several
  phrasings each); every action owns a random unit direction in feature space.
* Every video has ``min_sentences``..``max_sentences`` sentences, each describing a DIFFERENT action
  at its own moment. Moments have varied lengths and positions and may partly overlap (their pairwise
  IoU is kept at most ``max_pair_iou`` so that each sentence has its own answer). Optionally an extra,
  un-annotated action (a distractor nobody asks about) is also played somewhere in the video.
* A raw clip's feature is ``noise * N(0, I) + background * b_video + sum_k amp_k * w_k(t) * u_{action_k}``,
  where ``b_video`` is a per-video scene direction and ``w_k(t)`` the fraction of clip t that lies inside
  moment k (soft edges). Clips outside every moment carry only noise and the scene.

So the clip features tell WHERE actions happen and WHICH actions they are; only the sentence says which
of the 2-4 action moments of the video is asked for. A model that ignores the sentence can at best pick
one of the action moments at random, and the best fixed moment (the dataset prior) is weak because
moment positions and lengths are spread out.

Output (under ``root``), exactly as the official release lays Charades-STA out (see mmn.config.paths_catalog):

* ``Charades_STA/charades_train.json``, ``Charades_STA/charades_test.json``:
  ``{vid: {"duration": s, "timestamps": [[s, e], ...], "sentences": [...]}}``, seconds;
* ``Charades_STA/vgg_rgb_features.hdf5``: ``f[vid]`` float32 (num_raw_clips, feat_dim), train and test
  videos in the same file.

Everything is drawn from one ``numpy.random.Generator(seed)``: the same arguments give the same files.
"""
import json
import os

import numpy as np

# (phrasings...) per action; every word is a whole word in the bert-base-uncased vocabulary
ACTIONS = (
    ("opens the door", "opens a door"),
    ("turns on the light", "switches on the light"),
    ("sits down on a chair", "sits on the chair"),
    ("drinks from a cup", "drinks a glass of water"),
    ("reads a book", "is reading a book"),
    ("is washing the dishes", "does the dishes in the sink"),
    ("puts on a jacket", "puts a coat on"),
    ("eats a sandwich", "is eating some food"),
    ("looks out the window", "looks outside through the window"),
    ("talks on the phone", "is talking on a phone"),
    ("folds the clothes", "folds a towel"),
    ("sweeps the floor", "is cleaning the floor with a broom"),
)
SUBJECTS = ("person", "a person", "someone", "the person")
TEMPLATES = (
    "{subject} {action}.",
    "{subject} {action} in the room.",
    "then {subject} {action}.",
    "{subject} {action} slowly.",
    "after that {subject} {action}.",
    "{subject} {action} at home.",
)

SPLIT_FILES = {"train": "charades_train.json", "test": "charades_test.json"}
FOLDER = "Charades_STA"
FEATURE_FILE = "vgg_rgb_features.hdf5"

# generator defaults, shared by write_synthetic_charades and the demo
DEFAULTS = dict(
    duration_range=(20.0, 40.0),      # seconds
    clips_per_second=(1.0, 2.0),      # raw clips = round(duration * U(range))
    sentences_range=(2, 4),           # sentences (distinct actions) per video, inclusive
    moment_fraction=(0.12, 0.5),      # moment length as a fraction of the duration, uniform
    max_pair_iou=0.3,                 # max IoU between two annotated moments of the same video
    distractor_prob=0.5,              # probability of one extra, un-annotated action
    signal=(2.0, 3.5),                # action amplitude per moment, uniform
    noise=1.0,                        # std of the i.i.d. Gaussian clip noise (per dimension)
    background=3.0,                   # amplitude of the per-video scene direction
)


def make_sentence(rng, action):
    """A sentence for action index ``action``: template x subject x phrasing."""
    phrasing = ACTIONS[action][rng.integers(len(ACTIONS[action]))]
    template = TEMPLATES[rng.integers(len(TEMPLATES))]
    sentence = template.format(subject=SUBJECTS[rng.integers(len(SUBJECTS))], action=phrasing)
    return sentence[0].upper() + sentence[1:]


def _iou(a, b):
    inter = min(a[1], b[1]) - max(a[0], b[0])
    union = max(a[1], b[1]) - min(a[0], b[0])
    return max(inter, 0.0) / union


def _place_moments(rng, duration, count, fraction, max_pair_iou, max_tries=200):
    """``count`` moments [s, e] (seconds, 0.1 s resolution) with pairwise IoU <= max_pair_iou."""
    moments = []
    tries = 0
    while len(moments) < count:
        tries += 1
        length = duration * rng.uniform(*fraction)
        start = rng.uniform(0.0, duration - length)
        moment = (round(start, 1), round(min(start + length, duration), 1))
        if moment[1] <= moment[0]:
            continue
        if tries > max_tries or all(_iou(moment, m) <= max_pair_iou for m in moments):
            moments.append(moment)
    return moments


def _clip_weights(duration, num_clips, start, end):
    """Fraction of each raw clip [t d / n, (t + 1) d / n] that lies inside [start, end]."""
    edges = np.arange(num_clips + 1) * (duration / num_clips)
    overlap = np.minimum(edges[1:], end) - np.maximum(edges[:-1], start)
    return np.clip(overlap, 0.0, None) / (duration / num_clips)


def make_video(rng, directions, params):
    """One synthetic video: (annotation entry, float32 raw features (num_raw_clips, feat_dim))."""
    num_actions, feat_dim = directions.shape
    duration = round(float(rng.uniform(*params["duration_range"])), 2)
    num_raw = max(2, int(round(duration * rng.uniform(*params["clips_per_second"]))))
    low, high = params["sentences_range"]
    count = int(rng.integers(low, high + 1))
    has_distractor = rng.random() < params["distractor_prob"]
    actions = rng.choice(num_actions, size=count + int(has_distractor), replace=False)
    moments = _place_moments(rng, duration, len(actions), params["moment_fraction"], params["max_pair_iou"])

    scene = rng.standard_normal(feat_dim)
    scene *= params["background"] / np.linalg.norm(scene)
    feats = params["noise"] * rng.standard_normal((num_raw, feat_dim)) + scene
    for action, (start, end) in zip(actions, moments):
        amplitude = rng.uniform(*params["signal"])
        feats += amplitude * _clip_weights(duration, num_raw, start, end)[:, None] * directions[action][None, :]

    # the distractor (if any) is the last action: played, never described
    sentences = [make_sentence(rng, int(a)) for a in actions[:count]]
    entry = {"duration": duration, "timestamps": [list(m) for m in moments[:count]], "sentences": sentences}
    return entry, feats.astype(np.float32)


def write_synthetic_charades(root, num_train_videos=600, num_test_videos=200, feat_dim=128, seed=0, **overrides):
    """Write a synthetic Charades-STA dataset under ``root`` (see the module docstring); deterministic in ``seed``.

    ``overrides`` replace entries of ``DEFAULTS`` (duration_range, clips_per_second, sentences_range,
    moment_fraction, max_pair_iou, distractor_prob, signal, noise, background).
    Returns a dict: ``ann_files`` ({"train": path, "test": path}), ``feat_file``, ``num_queries``
    ({"train": n, "test": n}), ``params`` (the generator parameters used).
    """
    import h5py

    unknown = set(overrides) - set(DEFAULTS)
    if unknown:
        raise TypeError(f"unknown generator parameter(s): {sorted(unknown)}; known: {sorted(DEFAULTS)}")
    params = {**DEFAULTS, **overrides}
    if params["sentences_range"][1] > len(ACTIONS) - 1:
        raise ValueError(f"at most {len(ACTIONS) - 1} sentences per video (there are {len(ACTIONS)} actions)")

    rng = np.random.default_rng(seed)
    directions = rng.standard_normal((len(ACTIONS), feat_dim))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)

    folder = os.path.join(root, FOLDER)
    os.makedirs(folder, exist_ok=True)
    feat_file = os.path.join(folder, FEATURE_FILE)
    ann_files, num_queries = {}, {}
    tmp_feat = feat_file + ".tmp"
    with h5py.File(tmp_feat, "w", track_order=True) as h5:
        for split, num_videos in (("train", num_train_videos), ("test", num_test_videos)):
            annotations = {}
            for k in range(num_videos):
                vid = f"SYN{split[:2].upper()}{k:05d}"
                entry, feats = make_video(rng, directions, params)
                annotations[vid] = entry
                h5.create_dataset(vid, data=feats, track_times=False)
            ann_files[split] = os.path.join(folder, SPLIT_FILES[split])
            num_queries[split] = sum(len(e["sentences"]) for e in annotations.values())
            with open(ann_files[split], "w", encoding="utf-8") as f:
                json.dump(annotations, f)
    os.replace(tmp_feat, feat_file)
    return {"ann_files": ann_files, "feat_file": feat_file, "num_queries": num_queries, "params": params}
