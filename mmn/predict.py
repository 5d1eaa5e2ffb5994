"""Ask a trained model where a sentence happens in a video: the ``Predictor`` API and its CLI.

    from mmn.predict import Predictor
    predictor = Predictor.from_files("configs/pool_charades_16x16_k5l8.yaml", "best_charades.pth")
    moments = predictor.predict(features, duration=30.5, sentences=["person opens the door."])

Only the model, the feature preprocessing and the evaluation's NMS are used: no training code.
"""
import argparse
import json
import os
from dataclasses import dataclass

import numpy as np
import torch

from .config import load_config, resolve_device
from .data.annotations import FEATURE_KEYS
from .data.features import FeatureError, HDF5FeatureReader, prepare_video_features
from .data.tokenization import load_tokenizer
from .evaluation import fused_top_moments
from .modeling import build_model
from .structures import TLGBatch
from .utils.checkpoint import atomic_write_text, load_model_weights
from .utils.errors import MMNError
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
    score2d: torch.Tensor  # N x N fused score map (zero outside the valid cells)


class Predictor:
    """A model in eval mode plus everything needed to turn (features, duration, sentences) into moments."""

    def __init__(self, cfg, model, device):
        self.cfg = cfg
        self.model = apply_speed_options(model, cfg, device).eval()
        self.device = device
        self.tokenizer = load_tokenizer(cfg.MODEL.MMN.TEXT_ENCODER.PRETRAINED)

    @classmethod
    def from_files(cls, config_file, ckpt, opts=(), device=None):
        """Build from a YAML config and a checkpoint (ours or official); device "auto" unless given."""
        cfg = load_config(config_file, list(opts))
        model = build_model(cfg)
        load_model_weights(model, ckpt)
        return cls(cfg, model, torch.device(device) if device else resolve_device(cfg))

    @property
    def feature_dim(self):
        return self.cfg.MODEL.MMN.FEATPOOL.INPUT_SIZE

    def load_features(self, path, video_id=None):
        """Raw (T, D) clip features from a .npy file, or from an HDF5 file given the video id."""
        if not os.path.isfile(path):
            raise PredictionInputError(f"{path}: feature file not found")
        if path.endswith(".npy"):
            return torch.from_numpy(np.load(path).astype(np.float32))
        if video_id is None:
            raise PredictionInputError(f"{path}: an HDF5 feature file needs --video-id")
        reader = HDF5FeatureReader(path, key=FEATURE_KEYS.get(self.cfg.DATASETS.NAME), feat_dim=self.feature_dim)
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
        if features.shape[1] != self.feature_dim:
            raise PredictionInputError(f"features have dimension {features.shape[1]} but the checkpoint's model "
                                       f"expects {self.feature_dim} (MODEL.MMN.FEATPOOL.INPUT_SIZE)")
        if not torch.isfinite(features).all():
            raise PredictionInputError("features contain NaN or Inf")
        if not (isinstance(duration, (int, float)) and np.isfinite(duration) and duration > 0):
            raise PredictionInputError(f"duration must be a number of seconds > 0, got {duration!r}")
        if isinstance(sentences, str):
            sentences = [sentences]
        if not sentences or any(not isinstance(s, str) or not s.strip() for s in sentences):
            raise PredictionInputError("every query must be a non-empty sentence")
        return features, float(duration), list(sentences)

    @torch.no_grad()
    def predict(self, features, duration, sentences, topk=5):
        """Top-``topk`` moments (start_s, end_s, score) after NMS for each sentence, best first.

        features: raw clip features (T, D) of one video (numpy or torch); they are L2-normalised and
        resampled exactly as in training. Returns one ``Prediction`` per sentence.
        """
        features, duration, sentences = self._check(features, duration, sentences)
        encoded = self.tokenizer(sentences, padding=True, return_tensors="pt")
        count = len(sentences)
        batch = TLGBatch(
            feats=prepare_video_features(features, self.cfg.INPUT.NUM_PRE_CLIPS)[None],
            queries=encoded["input_ids"],
            wordlens=encoded["attention_mask"].sum(dim=1),
            moments=torch.zeros(count, 2),
            num_sentences=torch.tensor([count]),
            durations=torch.tensor([duration], dtype=torch.float64),
            indices=torch.tensor([0]),
            query_indices=torch.arange(count),
        ).to(self.device)
        with autocast(self.cfg.MODEL.AMP, self.device):
            out = self.model(batch)
        fused, moments, scores = fused_top_moments(out["contrastive"], out["iou"],
                                                   torch.full((count,), duration, dtype=torch.float64),
                                                   self.cfg.TEST.NMS_THRESH, self.cfg.TEST.CONTRASTIVE_SCORE_POW, k=topk)
        results = []
        for sentence, m, s, score2d in zip(sentences, moments, scores, fused):
            kept = torch.isfinite(s)
            results.append(Prediction(sentence, [Moment(float(a), float(b), float(c))
                                                 for (a, b), c in zip(m[kept].tolist(), s[kept].tolist())], score2d))
        return results


def predictions_to_json(predictions, duration):
    return {"duration": duration,
            "queries": [{"sentence": p.sentence, "moments": [[m.start, m.end, m.score] for m in p.moments]}
                        for p in predictions]}


def format_predictions(predictions):
    from terminaltables import AsciiTable

    rows = [["query", "rank", "start (s)", "end (s)", "score"]]
    for p in predictions:
        for rank, m in enumerate(p.moments, 1):
            rows.append([p.sentence if rank == 1 else "", rank, f"{m.start:.2f}", f"{m.end:.2f}", f"{m.score:.4f}"])
    return AsciiTable(rows).table


def main(argv=None):
    parser = argparse.ArgumentParser(description="Where in this video does this sentence happen?")
    parser.add_argument("--config", required=True, help="YAML config of the checkpoint")
    parser.add_argument("--ckpt", required=True, help="checkpoint (ours or official)")
    parser.add_argument("--features", required=True, help=".npy (T, D) or HDF5 feature file")
    parser.add_argument("--video-id", default=None, help="video id inside an HDF5 feature file")
    parser.add_argument("--duration", required=True, type=float, help="video duration in seconds")
    parser.add_argument("--query", required=True, action="append", help="sentence (repeat for several)")
    parser.add_argument("--topk", type=int, default=5)
    parser.add_argument("--json", default=None, help="also write the moments to this JSON file")
    parser.add_argument("--device", default=None, help="cpu, cuda, ... (default: MODEL.DEVICE, auto)")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides: KEY VALUE ...")
    args = parser.parse_args(argv)
    try:
        predictor = Predictor.from_files(args.config, args.ckpt, args.opts, device=args.device)
        features = predictor.load_features(args.features, args.video_id)
        predictions = predictor.predict(features, args.duration, args.query, topk=args.topk)
    except PredictionInputError as err:
        parser.exit(2, f"mmn-predict: error: {err}\n")
    print(format_predictions(predictions))
    if args.json:
        atomic_write_text(json.dumps(predictions_to_json(predictions, args.duration), indent=1), args.json)
    return predictions


if __name__ == "__main__":
    main()
