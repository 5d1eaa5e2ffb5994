"""What the page does, without the page: a checkpoint that can read video files, the upload checks, the
feature cache by content hash and the prediction. No Gradio here, so all of it is tested directly.

The feature cache maps the sha256 of a video file's bytes to its (features, duration): asking another
sentence about the same video (or uploading the same file again under any name) re-uses them, for the
server's lifetime. It keeps the ``cache_size`` most recently used videos (a minute of video at 0.5 fps is
30 x 512 floats, 60 kB), so a long-running server does not grow without bound.
"""
import hashlib
import os
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass

from ..predict import Predictor
from ..utils.errors import MMNError
from ..video.extract import extract_video

DEFAULT_MAX_UPLOAD_MB = 200
DEFAULT_CACHE_SIZE = 128
MAX_SENTENCES = 20


class WebInputError(MMNError, ValueError):
    """Input from the page that cannot be used; its message is shown on the page."""


class WebConfigError(MMNError, ValueError):
    """A checkpoint or option the server cannot start with (reported in one line at start)."""


def parse_sentences(text):
    """The non-empty lines of ``text``, stripped; at least one and at most MAX_SENTENCES."""
    sentences = [line.strip() for line in (text or "").splitlines() if line.strip()]
    if not sentences:
        raise WebInputError("type a sentence (one per line) to look for in the video")
    if len(sentences) > MAX_SENTENCES:
        raise WebInputError(f"{len(sentences)} sentences: at most {MAX_SENTENCES} at once")
    return sentences


def file_sha256(path, chunk_size=1 << 20):
    """Hex sha256 of the file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk_size), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass
class VideoAnswer:
    """The predictions for the sentences asked about one video."""

    name: str            # the uploaded file's name
    duration: float      # seconds, from the stream
    rows: int            # feature rows (clips of 1 / fps s)
    digest: str          # sha256 of the file
    cached: bool         # features came from the cache
    extract_s: float     # seconds spent decoding + encoding (0 when cached)
    predictions: list    # mmn.predict.Prediction per sentence


class _FrameProgress:
    """The progress object ``extract_video`` updates (``total``, ``reset``, ``update``) -> ``report``."""

    def __init__(self, report):
        self.report = report
        self.total = None
        self.done = 0

    def reset(self, total=None):
        self.total, self.done = total, 0
        self._tell()

    def update(self, n=1):
        self.done += n
        self._tell()

    def _tell(self):
        of = f" / {self.total}" if self.total else ""
        fraction = min(self.done / self.total, 1.0) if self.total else None
        self.report(fraction, f"decoding and encoding frames: {self.done}{of}")


class VideoMomentService:
    """A ``Predictor`` whose checkpoint names a video extractor, with upload checks and a feature cache.

    ``encoder`` overrides the extractor's from_pretrained name or directory (INPUT.VIDEO.ENCODER), e.g. a
    local copy for an offline machine. The image encoder is loaded here, so an unusable one stops the
    server at start instead of failing on the first upload.
    """

    def __init__(self, predictor, encoder=None, max_upload_mb=DEFAULT_MAX_UPLOAD_MB, cache_size=DEFAULT_CACHE_SIZE,
                 checkpoint_name=""):
        cfg = predictor.cfg
        if not (encoder or cfg.INPUT.VIDEO.ENCODER):
            raise WebConfigError(
                f"{checkpoint_name or 'the checkpoint'}: its config names no video feature extractor "
                "(INPUT.VIDEO.ENCODER is empty): it was trained on features made elsewhere, which cannot be rebuilt "
                "from an uploaded video; serve a checkpoint trained on mmn-extract features "
                "(configs/pool_clip_b32_fps05.yaml)")
        if not max_upload_mb > 0:
            raise WebConfigError(f"the upload limit must be > 0 MB, got {max_upload_mb}")
        self.predictor = predictor
        self.encoder = encoder
        self.max_upload_bytes = int(max_upload_mb * 1024 * 1024)
        self.max_upload_mb = max_upload_mb
        self.cache_size = cache_size
        self.checkpoint_name = checkpoint_name
        self.image_encoder = predictor.image_encoder(encoder)  # PredictionInputError when unusable
        self.fps = float(cfg.INPUT.VIDEO.FPS)
        self._cache = OrderedDict()  # sha256 -> (features (T, D) tensor, duration)
        self._lock = threading.Lock()
        self.extractions = 0         # videos decoded and encoded since start (the cache's misses)

    @classmethod
    def from_checkpoint(cls, ckpt, encoder=None, config_file=None, opts=(), device=None, **kwargs):
        """Load ``ckpt`` (with ``config_file`` / ``opts`` as ``Predictor.from_checkpoint``) and check that
        it can read video files."""
        predictor = Predictor.from_checkpoint(ckpt, config_file, opts, device=device)
        return cls(predictor, encoder, checkpoint_name=os.path.basename(ckpt), **kwargs)

    @property
    def architecture(self):
        return self.predictor.cfg.MODEL.ARCHITECTURE

    @property
    def encoder_name(self):
        return self.image_encoder.name

    def check_upload(self, path, name=None):
        """Refuse a missing, empty or over-size file; returns its size in bytes."""
        name = name or os.path.basename(path or "")
        if not path or not os.path.isfile(path):
            raise WebInputError("upload a video file first (or pick the example)")
        size = os.path.getsize(path)
        if size == 0:
            raise WebInputError(f"{name}: the file is empty")
        if size > self.max_upload_bytes:
            raise WebInputError(f"{name}: {size / 2**20:.1f} MB is over this server's limit of "
                                f"{self.max_upload_mb:g} MB per video")
        return size

    def video_features(self, path, name=None, progress=None):
        """(features (T, D), duration s, sha256, from the cache?, seconds spent extracting) of the video file
        ``path``, extracted as ``Predictor.video_features`` does (the checkpoint's extractor and rate).
        ``progress(fraction or None, text)`` hears about the decoding and encoding."""
        name = name or os.path.basename(path)
        self.check_upload(path, name)
        report = progress or (lambda fraction, text: None)
        report(0.0, "hashing the file")
        digest = file_sha256(path)
        with self._lock:
            hit = self._cache.get(digest)
            if hit is not None:
                self._cache.move_to_end(digest)
                return hit[0], hit[1], digest, True, 0.0
        start = time.perf_counter()
        try:
            features, video = extract_video(path, self.image_encoder, self.fps, progress=_FrameProgress(report))
        except MMNError as err:  # VideoDecodeError names the server's temporary path: name the upload instead
            raise WebInputError(str(err).replace(path, name)) from None
        import torch

        features = torch.from_numpy(features)
        with self._lock:
            self.extractions += 1
            self._cache[digest] = (features, video.duration)
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return features, video.duration, digest, False, time.perf_counter() - start

    def answer(self, path, sentences_text, topk=5, name=None, progress=None):
        """The top-``topk`` moments of each sentence (one per line of ``sentences_text``) in the video file
        ``path``; a ``VideoAnswer``. Bad input raises ``WebInputError`` (or another ``MMNError``)."""
        name = name or os.path.basename(path or "")
        sentences = parse_sentences(sentences_text)  # before the (slow) extraction
        self.check_upload(path, name)
        features, duration, digest, cached, extract_s = self.video_features(path, name, progress)
        if progress is not None:
            progress(None, f"predicting {len(sentences)} sentence(s)")
        predictions = self.predictor.predict(features, duration, sentences, topk=int(topk))
        return VideoAnswer(name, duration, int(features.shape[0]), digest, cached, extract_s, predictions)
