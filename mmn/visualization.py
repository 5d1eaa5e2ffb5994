"""Plots (matplotlib, Agg backend): a query's 2D moment score map, a timeline, a saliency curve, training
curves, and the plots of a dataset's first queries (test_net.py --vis). The plots on a time axis return a
``PlotLayout`` (where that axis and the moment bars lie in the PNG), so that a page can turn a click on the
image into a time."""
import json
import logging
import os
from dataclasses import dataclass, field

from .utils.checkpoint import atomic_write

logger = logging.getLogger("mmn")


@dataclass
class PlotLayout:
    """Pixel geometry of a PNG written by a time-axis plot (origin at the image's top left)."""

    width: int                    # image size, px
    height: int
    axes: tuple                   # (left, top, right, bottom) px of the plotting area
    time_range: tuple             # (t0, t1) seconds at the area's left and right edges
    bars: list = field(default_factory=list)  # (left, top, right, bottom) px of each moment bar, rank order

    def time_at(self, x):
        """The time (s) under pixel column ``x``, clamped to the time range."""
        left, _, right, _ = self.axes
        t0, t1 = self.time_range
        frac = min(max((x - left) / max(right - left, 1e-9), 0.0), 1.0)
        return t0 + frac * (t1 - t0)

    def bar_at(self, x, y, slack=2):
        """Index (0 = rank 1) of the moment bar under pixel (x, y), within ``slack`` px; None for none."""
        for k, (left, top, right, bottom) in enumerate(self.bars):
            if left - slack <= x <= right + slack and top - slack <= y <= bottom + slack:
                return k
        return None


def _layout(fig, ax, bars=()):
    """PlotLayout of ``ax`` in ``fig`` as saved at the figure's dpi, ``bars`` given as data-space
    (x0, y0, x1, y1) rectangles."""
    width, height = (round(v * fig.dpi) for v in fig.get_size_inches())

    def box(x0, y0, x1, y1):
        (a, b), (c, d) = ax.transData.transform([(x0, y0), (x1, y1)])
        return (float(min(a, c)), float(height - max(b, d)), float(max(a, c)), float(height - min(b, d)))

    bbox = ax.bbox
    return PlotLayout(width, height, (float(bbox.x0), float(height - bbox.y1), float(bbox.x1), float(height - bbox.y0)),
                      tuple(float(v) for v in ax.get_xlim()), [box(*b) for b in bars])


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _cell_of(moment, duration, num_clips):
    """Map cell (row = start clip, col = end clip) of a moment in seconds."""
    start, end = moment
    i = min(max(int(start / duration * num_clips), 0), num_clips - 1)
    j = min(max(int(round(end / duration * num_clips)) - 1, i), num_clips - 1)
    return i, j


def plot_score_map(score_map, duration, path, gt=None, top=None, title=None, size=(5.0, 4.5), dpi=100):
    """Heat map of an N x N score map (rows: start clip, columns: end clip); ground truth as a square,
    top moments numbered by rank. Writes a PNG of ``size`` inches at ``dpi``."""
    plt = _pyplot()
    score_map = score_map.detach().float().cpu().numpy() if hasattr(score_map, "detach") else score_map
    n = score_map.shape[0]
    fig, ax = plt.subplots(figsize=size, dpi=dpi)
    import numpy as np

    image = ax.imshow(np.ma.masked_where(score_map == 0, score_map), origin="upper", cmap="viridis",
                      interpolation="nearest")  # invalid cells (score 0) stay blank
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="score")
    if gt is not None:
        i, j = _cell_of(gt, duration, n)
        ax.scatter([j], [i], marker="s", s=160, facecolors="none", edgecolors="red", linewidths=2, label="ground truth")
    for rank, moment in enumerate(top or [], 1):
        i, j = _cell_of(moment[:2], duration, n)
        ax.text(j, i, str(rank), color="white", ha="center", va="center", fontsize=9, fontweight="bold")
    ticks = list(range(0, n, max(1, n // 8)))
    ends, starts = [(t + 1) * duration / n for t in ticks], [t * duration / n for t in ticks]
    # whole seconds, unless labels a few seconds apart would lose their fractions (8 s in 16 clips: 0.5, 1.5, ...)
    step = (ticks[1] - ticks[0]) * duration / n if len(ticks) > 1 else duration
    whole = step >= 5 or all(abs(v - round(v)) < 0.05 for v in ends + starts)
    ax.set_xticks(ticks, [f"{v:.0f}" if whole else f"{v:.1f}" for v in ends])
    ax.set_yticks(ticks, [f"{v:.0f}" if whole else f"{v:.1f}" for v in starts])
    ax.set_xlabel("end (s)")
    ax.set_ylabel("start (s)")
    if gt is not None:
        ax.legend(loc="lower left", fontsize=8)
    ax.set_title(_short(title or "moment scores"), fontsize=9)
    fig.tight_layout()
    _save(fig, path, plt)


def plot_timeline(duration, path, gt=None, top=None, title=None, size=(7.0, 2.4), dpi=100):
    """Predicted moments (ranked, best on top) against the ground truth on the video's time axis.
    Returns the PNG's ``PlotLayout`` (its ``bars`` are the moments', in rank order)."""
    plt = _pyplot()
    top = list(top or [])
    fig, ax = plt.subplots(figsize=size, dpi=dpi)
    rows = len(top) + (gt is not None)
    y = rows
    if gt is not None:
        ax.barh(y, gt[1] - gt[0], left=gt[0], height=0.6, color="tab:red", label="ground truth")
        y -= 1
    bars = []
    for rank, moment in enumerate(top, 1):
        alpha = max(0.9 - 0.12 * rank, 0.2)  # fading with the rank, still visible at rank 10
        ax.barh(y, moment[1] - moment[0], left=moment[0], height=0.6, color="tab:blue", alpha=alpha)
        bars.append((moment[0], y - 0.3, moment[1], y + 0.3))
        label = f"#{rank}" + (f" {moment[2]:.3g}" if len(moment) > 2 else "")
        ax.text(moment[1], y, " " + label, va="center", fontsize=8)
        y -= 1
    ax.set_xlim(0, duration)
    ax.set_yticks([])
    ax.set_xlabel("time (s)")
    ax.set_title(_short(title or "predicted moments"), fontsize=9)
    if gt is not None:
        ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    fig.tight_layout()
    layout = _layout(fig, ax, bars)
    _save(fig, path, plt)
    return layout


def plot_saliency(saliency, duration, path, top=None, title=None, clip_seconds=None, size=(7.0, 2.0), dpi=100):
    """A query's per-clip saliency (T scores) as a step curve over the video's time axis, with the top-1
    moment of ``top`` shaded. Clip k spans [k, k + 1] x ``clip_seconds`` (the last one ends at the
    duration), or [k, k + 1] x duration / T without ``clip_seconds``. Returns the PNG's ``PlotLayout``."""
    import numpy as np

    plt = _pyplot()
    values = saliency.detach().float().cpu().numpy() if hasattr(saliency, "detach") else np.asarray(saliency, float)
    values = values.reshape(-1)
    if clip_seconds:
        edges = np.minimum(np.arange(len(values) + 1) * clip_seconds, duration)
        edges[-1] = duration
    else:
        edges = np.linspace(0.0, duration, len(values) + 1)
    fig, ax = plt.subplots(figsize=size, dpi=dpi)
    if top:
        ax.axvspan(top[0][0], top[0][1], color="tab:blue", alpha=0.15, label="top-1 moment")
    ax.stairs(values, edges, color="tab:orange", linewidth=1.8, label="saliency")
    ax.set_xlim(0, duration)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("saliency")
    ax.set_title(_short(title or "saliency per clip"), fontsize=9)
    ax.legend(loc="upper right", fontsize=7)
    fig.tight_layout()
    layout = _layout(fig, ax)
    _save(fig, path, plt)
    return layout


def plot_training_curves(metrics_jsonl, path, size=(9.0, 3.5), dpi=100):
    """Loss terms and recalls per epoch from ``metrics.jsonl`` (written by the trainer)."""
    plt = _pyplot()
    with open(metrics_jsonl) as f:
        records = [json.loads(line) for line in f if line.strip()]
    epochs = [r["epoch"] for r in records]
    fig, (left, right) = plt.subplots(1, 2, figsize=size, dpi=dpi)
    for key in sorted({k for r in records for k in r if k.startswith("loss")}):
        left.plot(epochs, [r.get(key) for r in records], marker="o", label=key)
    left.set_xlabel("epoch")
    left.set_title("training losses", fontsize=9)
    left.legend(fontsize=8)
    splits = [split for split in ("test", "val") if any(split in r for r in records)]
    for split, style in zip(splits, ("-", "--")):
        tested = [r for r in records if split in r]
        for key in [k for k in tested[0][split] if k.startswith("R@") or k == "mIoU"]:
            right.plot([r["epoch"] for r in tested], [r[split][key] * 100 for r in tested], style, marker="o",
                       label=f"{key} ({split})" if len(splits) > 1 else key)
    right.set_xlabel("epoch")
    right.set_title(f"{' / '.join(splits) or 'test'} recall (%)", fontsize=9)
    if splits:
        right.legend(fontsize=7)
    fig.tight_layout()
    _save(fig, path, plt)


def _short(text, limit=70):
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _save(fig, path, plt):
    try:
        atomic_write(path, "wb", lambda f: fig.savefig(f, format="png"))
    finally:
        plt.close(fig)


def plot_queries(dataset, moments, scores, score_maps, count, out_dir):
    """A timeline PNG of the first ``count`` queries of ``dataset`` (ground truth vs ranked moments) and,
    for models that score a moment map, the map; returns the paths."""
    import torch

    count = min(count, dataset.num_queries)
    durations, gts, sentences = dataset.query_durations(), dataset.query_moments(), dataset.query_sentences()
    paths = []
    for q in range(count):
        kept = torch.isfinite(scores[q])
        top = torch.cat([moments[q][kept].double(), scores[q][kept, None].double()], dim=1).tolist()
        gt, duration, title = gts[q].tolist(), float(durations[q]), sentences[q]
        stem = os.path.join(out_dir, f"query_{q:05d}")
        if q in score_maps:
            plot_score_map(score_maps[q], duration, stem + "_map.png", gt=gt, top=top, title=title)
            paths.append(stem + "_map.png")
        plot_timeline(duration, stem + "_timeline.png", gt=gt, top=top, title=title)
        paths.append(stem + "_timeline.png")
    logger.info("wrote %d plots to %s", len(paths), out_dir)
    return paths
