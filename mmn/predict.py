"""Ask a trained model where a sentence happens in a video: the ``Predictor`` API and its CLI.

    from mmn.predict import Predictor
    predictor = Predictor.from_checkpoint("outputs/charades/best_charades.pth")   # the config it carries
    moments = predictor.predict(features, duration=30.5, sentences=["person opens the door."])
    moments = predictor.predict_video("my_video.mp4", ["person opens the door."])  # checkpoints of mmn-extract features

Any registered model works: the batch comes from its ``build_query_batch`` and the ranked moments from
its ``rank_moments`` (the model contract, mmn/modeling/base.py); no training code is used.
"""
import argparse
import json
import os
from dataclasses import dataclass

import numpy as np
import torch

from .config import load_config, resolve_device
from .data.catalog import get_entry
from .data.features import FeatureError, HDF5FeatureReader
from .modeling import build_model
from .utils.checkpoint import atomic_write_text, load_model_weights
from .utils.errors import MMNError, run_cli
from .utils.speed import apply_speed_options, autocast


class PredictionInputError(MMNError, ValueError):
    """Input the predictor cannot use (feature shape, duration, empty query, missing video)."""


@dataclass
class Moment:
    start: float
    end: float
    score: float


@dataclass
class Prediction:
    sentence: str
    moments: list          # [Moment], best first
    score_map: torch.Tensor  # N x N score map of a map-based model (zero outside its cells); None for other models


class Predictor:
    """A model in eval mode plus everything needed to turn (features, duration, sentences) into moments."""

    def __init__(self, cfg, model, device):
        self.cfg = cfg
        self.model = apply_speed_options(model, cfg, device).eval()
        self.device = device
        self._image_encoder = None  # loaded on the first video (mmn.video)

    @classmethod
    def from_checkpoint(cls, ckpt, config_file=None, opts=(), device=None):
        """Build from a checkpoint: ours carry their config; ``config_file`` and ``opts`` (KEY VALUE ...)
        take precedence, and a released official checkpoint needs ``config_file``. Device: MODEL.DEVICE
        ("auto") unless given."""
        cfg = load_config(config_file, list(opts), checkpoint=ckpt)
        model = build_model(cfg)
        load_model_weights(model, ckpt)
        return cls(cfg, model, torch.device(device) if device else resolve_device(cfg))

    @property
    def feature_dim(self):
        return type(self.model).feature_dim(self.cfg)[0]

    def _feature_key(self):
        """The HDF5 key of the config's test split (ActivityNet's c3d_features), None without a split."""
        return get_entry(self.cfg, self.cfg.DATASETS.TEST[0]).feat_key if self.cfg.DATASETS.TEST else None

    def load_features(self, path, video_id=None):
        """Raw (T, D) clip features from a .npy file, or from an HDF5 file given the video id."""
        if not os.path.isfile(path):
            raise PredictionInputError(f"{path}: feature file not found")
        if path.endswith(".npy"):
            return torch.from_numpy(np.load(path).astype(np.float32))
        if video_id is None:
            raise PredictionInputError(f"{path}: an HDF5 feature file needs --video-id")
        dim, dim_key = type(self.model).feature_dim(self.cfg)
        reader = HDF5FeatureReader(path, key=self._feature_key(), feat_dim=dim, dim_key=dim_key)
        try:
            return reader.read(video_id)
        except FeatureError as err:
            raise PredictionInputError(str(err)) from None
        finally:
            reader.close()

    def _check(self, features, duration, sentences):
        features = torch.as_tensor(np.asarray(features, dtype=np.float32))
        if features.ndim != 2 or features.shape[0] == 0:
            raise PredictionInputError(f"features must be a (T, D) array with T >= 1, got shape {tuple(features.shape)}")
        dim, key = type(self.model).feature_dim(self.cfg)
        if features.shape[1] != dim:
            raise PredictionInputError(f"features have dimension {features.shape[1]} but the checkpoint's model "
                                       f"expects {dim} ({key})")
        if not torch.isfinite(features).all():
            raise PredictionInputError("features contain NaN or Inf")
        if not (isinstance(duration, (int, float)) and np.isfinite(duration) and duration > 0):
            raise PredictionInputError(f"duration must be a number of seconds > 0, got {duration!r}")
        if isinstance(sentences, str):
            sentences = [sentences]
        if not sentences or any(not isinstance(s, str) or not s.strip() for s in sentences):
            raise PredictionInputError("every query must be a non-empty sentence")
        return features, float(duration), list(sentences)

    def image_encoder(self, encoder=None, dtype="fp32", batch_size=64):
        """The image encoder of the video feature extractor: ``encoder`` (a from_pretrained name or
        directory) or the one recorded in the checkpoint's config (INPUT.VIDEO.ENCODER), on this device."""
        from .video.encoder import ImageEncoderLoadError, load_image_encoder

        name = encoder or self.cfg.INPUT.VIDEO.ENCODER
        if not name:
            raise PredictionInputError(
                "the checkpoint's config names no video feature extractor (INPUT.VIDEO.ENCODER is empty): it was "
                "trained on features made elsewhere, which cannot be rebuilt from a video file. Predict from those "
                "features (--features), or train on mmn-extract features (configs/pool_clip_b32_fps05.yaml)")
        cached = self._image_encoder
        if cached is None or (cached.name, cached.dtype, cached.batch_size) != (name, dtype, batch_size):
            try:
                cached = load_image_encoder(name, self.device, dtype, batch_size)
            except ImageEncoderLoadError as err:
                raise PredictionInputError(str(err)) from None
            if cached.dim != self.feature_dim:
                raise PredictionInputError(
                    f"the image encoder {name!r} gives {cached.dim}-d features but the checkpoint's model expects "
                    f"{self.feature_dim}: it was trained on another extractor's features")
            self._image_encoder = cached
        return cached

    def video_features(self, path, encoder=None, dtype="fp32", batch_size=64):
        """(raw (T, D) clip features, duration_s) of the video file ``path``, extracted as mmn-extract does
        with the checkpoint's extractor (INPUT.VIDEO.ENCODER at INPUT.VIDEO.FPS; ``encoder`` overrides the
        model's name or path); the duration comes from the stream."""
        from .video.decode import VideoDecodeError
        from .video.extract import extract_video

        image_encoder = self.image_encoder(encoder, dtype, batch_size)
        try:
            features, video = extract_video(path, image_encoder, self.cfg.INPUT.VIDEO.FPS)
        except VideoDecodeError as err:
            raise PredictionInputError(str(err)) from None
        return torch.from_numpy(features), video.duration

    def predict_video(self, path, sentences, topk=5, encoder=None, dtype="fp32", batch_size=64):
        """``predict`` on the video file ``path``: its features are extracted with the checkpoint's
        extractor (``video_features``) and its duration read from the stream."""
        features, duration = self.video_features(path, encoder, dtype, batch_size)
        return self.predict(features, duration, sentences, topk=topk)

    @torch.no_grad()
    def predict(self, features, duration, sentences, topk=5):
        """Top-``topk`` moments (start_s, end_s, score) after NMS for each sentence, best first.

        features: raw clip features (T, D) of one video (numpy or torch); they are L2-normalised and
        resampled exactly as in training. Returns one ``Prediction`` per sentence.
        """
        features, duration, sentences = self._check(features, duration, sentences)
        batch = type(self.model).build_query_batch(self.cfg, features, duration, sentences).to(self.device)
        with autocast(self.cfg.MODEL.AMP, self.device):
            out = self.model(batch)
        ranked = self.model.rank_moments(out, batch, topk)
        results = []
        for q, sentence in enumerate(sentences):
            kept = torch.isfinite(ranked.scores[q])
            moments = [Moment(float(a), float(b), float(c))
                       for (a, b), c in zip(ranked.moments[q][kept].tolist(), ranked.scores[q][kept].tolist())]
            score_map = ranked.score_maps[q] if ranked.score_maps is not None else None
            results.append(Prediction(sentence, moments, score_map))
        return results


def predictions_to_json(predictions, duration, video=None):
    head = {"video": video} if video else {}
    return {**head, "duration": duration,
            "queries": [{"sentence": p.sentence, "moments": [[m.start, m.end, m.score] for m in p.moments]}
                        for p in predictions]}


def format_predictions(predictions):
    from terminaltables import AsciiTable

    rows = [["query", "rank", "start (s)", "end (s)", "score"]]
    for p in predictions:
        for rank, m in enumerate(p.moments, 1):
            rows.append([p.sentence if rank == 1 else "", rank, f"{m.start:.2f}", f"{m.end:.2f}", f"{m.score:.4f}"])
    return AsciiTable(rows).table


def argument_parser():
    parser = argparse.ArgumentParser(prog="mmn-predict", description="Where in this video does this sentence happen?")
    parser.add_argument("--ckpt", required=True, help="checkpoint (ours carry their config; official ones need --config)")
    parser.add_argument("--config", default=None, help="YAML config (default: the one stored in the checkpoint)")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--features", help=".npy (T, D) or HDF5 feature file (with --duration)")
    source.add_argument("--video", metavar="FILE", help="a video file: features extracted with the checkpoint's "
                        "extractor (INPUT.VIDEO), duration from the stream (needs PyAV: pip install av)")
    parser.add_argument("--video-id", default=None, help="video id inside an HDF5 feature file")
    parser.add_argument("--duration", type=float, default=None, help="video duration in seconds (with --features)")
    parser.add_argument("--encoder", default=None, metavar="NAME_OR_PATH",
                        help="with --video: the CLIP model's from_pretrained name or local directory, instead of "
                             "the checkpoint's INPUT.VIDEO.ENCODER (e.g. a local copy, offline)")
    parser.add_argument("--query", required=True, action="append", help="sentence (repeat for several)")
    parser.add_argument("--topk", type=int, default=5)
    parser.add_argument("--json", default=None, help="also write the moments to this JSON file")
    parser.add_argument("--device", default=None, help="cpu, cuda, ... (default: MODEL.DEVICE, auto)")
    parser.add_argument("opts", nargs="*", help="config overrides: KEY VALUE ...")
    return parser


def predict_from_args(args):
    """Run the CLI's prediction; prints the table, writes ``--json``; returns the predictions."""
    if args.video is not None:
        if args.duration is not None or args.video_id is not None:
            raise PredictionInputError("--video reads the duration from the stream: no --duration / --video-id")
    else:
        if args.duration is None:
            raise PredictionInputError("--features needs --duration (seconds)")
        if args.encoder is not None:
            raise PredictionInputError("--encoder applies to --video only")
    predictor = Predictor.from_checkpoint(args.ckpt, args.config, args.opts, device=args.device)
    if args.video is not None:
        features, duration = predictor.video_features(args.video, args.encoder)
    else:
        features, duration = predictor.load_features(args.features, args.video_id), args.duration
    predictions = predictor.predict(features, duration, args.query, topk=args.topk)
    if args.video is not None:
        print(f"{args.video}: {duration:.2f} s, {features.shape[0]} feature rows "
              f"({predictor.image_encoder(args.encoder).name} at {predictor.cfg.INPUT.VIDEO.FPS:g} fps)")
    print(format_predictions(predictions))
    if args.json:
        atomic_write_text(json.dumps(predictions_to_json(predictions, duration, args.video), indent=1), args.json)
    return predictions


def main(argv=None):
    """Parse ``argv`` and predict; returns 0. A bad input raises an ``MMNError`` (``cli`` reports it)."""
    predict_from_args(argument_parser().parse_intermixed_args(argv))
    return 0


def cli():
    """The mmn-predict console script: the table on stdout and exit status 0, or one error line and 2."""
    return run_cli(main, prog="mmn-predict")


if __name__ == "__main__":
    raise SystemExit(cli())
