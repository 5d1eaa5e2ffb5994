"""A prediction as the page shows it: plain records (no tensors) and the PNGs of one sentence's plots.

The saliency curve is drawn whenever a prediction carries a per-clip ``saliency`` (T scores for the
sentence; models with a highlight head, such as Moment-DETR, set it); the 2D score map whenever it
carries a ``score_map`` (models that score a moment map: MMN, 2D-TAN).
"""
import os
from dataclasses import dataclass
from typing import Optional

import numpy as np

from ..visualization import PlotLayout, plot_saliency, plot_score_map, plot_timeline


def _as_array(value):
    """A tensor or array-like as a float numpy array; None stays None."""
    if value is None:
        return None
    if hasattr(value, "detach"):
        value = value.detach().float().cpu().numpy()
    return np.asarray(value, dtype=np.float64)


def query_record(prediction):
    """A ``Prediction`` (or any object with ``sentence``, ``moments`` and optionally ``score_map`` and
    ``saliency``) as a dict of plain values, kept in the page's session state."""
    saliency = _as_array(getattr(prediction, "saliency", None))
    if saliency is not None:
        saliency = saliency.reshape(-1)
        if saliency.size == 0:
            saliency = None
    return {"sentence": prediction.sentence,
            "moments": [(float(m.start), float(m.end), float(m.score)) for m in prediction.moments],
            "score_map": _as_array(getattr(prediction, "score_map", None)),
            "saliency": saliency}


@dataclass
class QueryFigures:
    """The PNG files of one sentence's plots (None where the model gives nothing to draw) and the layouts
    of the time-axis plots, to turn a click into a time."""

    timeline: str
    timeline_layout: PlotLayout
    saliency: Optional[str] = None
    saliency_layout: Optional[PlotLayout] = None
    score_map: Optional[str] = None


def render_query(record, duration, out_dir, stem, clip_seconds=None):
    """Draw ``record`` (``query_record``) of a video of ``duration`` s into ``out_dir/stem_*.png``.

    ``clip_seconds``: the length of one saliency clip when the saliency has one value per feature row
    (1 / fps; the last clip ends at the duration), else the clips split the duration evenly."""
    sentence = record["sentence"]
    title = f"\u201c{sentence}\u201d"
    timeline = os.path.join(out_dir, f"{stem}_timeline.png")
    figures = QueryFigures(timeline, plot_timeline(duration, timeline, top=record["moments"], title=title,
                                                   size=(7.0, 0.9 + 0.32 * max(len(record["moments"]), 1)), dpi=110))
    if record["saliency"] is not None:
        figures.saliency = os.path.join(out_dir, f"{stem}_saliency.png")
        figures.saliency_layout = plot_saliency(record["saliency"], duration, figures.saliency, top=record["moments"],
                                                title=title, clip_seconds=clip_seconds, dpi=110)
    if record["score_map"] is not None:
        figures.score_map = os.path.join(out_dir, f"{stem}_score_map.png")
        plot_score_map(record["score_map"], duration, figures.score_map, top=record["moments"], title=title,
                       size=(5.0, 4.2), dpi=100)
    return figures
