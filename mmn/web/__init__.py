"""``mmn-web``: a page that finds where sentences happen in an uploaded video (an optional extra,
``pip install -e ".[web]"``). The top layer: it uses ``mmn.predict``, ``mmn.video`` and
``mmn.visualization``, and nothing imports it.

``service`` (upload checks, the feature cache by content hash, prediction; no Gradio), ``figures`` (a
prediction's plots), ``app`` (the Gradio page and its handlers), ``cli`` (``mmn-web``).
"""
from .service import MAX_SENTENCES, VideoAnswer, VideoMomentService, WebConfigError, WebInputError, parse_sentences

__all__ = ["MAX_SENTENCES", "VideoAnswer", "VideoMomentService", "WebConfigError", "WebInputError", "parse_sentences"]
