"""The image encoder: transformers' CLIP vision model with its projection, and its own image processor.

``load_image_encoder(name_or_path)`` calls ``from_pretrained(name_or_path)`` of
``CLIPVisionModelWithProjection`` and ``AutoImageProcessor``: a hub name (default
``openai/clip-vit-base-patch32``, whose full CLIP checkpoint holds the vision tower and the projection
under the same names) or a local ``from_pretrained`` directory, which works offline. A feature is the
projected image embedding (``image_embeds``, 512-d for ViT-B/32), not normalised: the data layer
L2-normalises every clip feature, as it does for the benchmarks' features.
"""
import contextlib
import functools
import os
import time

import numpy as np
import torch

from ..utils.errors import MMNError

DEFAULT_ENCODER = "openai/clip-vit-base-patch32"
DTYPES = ("fp32", "bf16")


class ImageEncoderLoadError(MMNError, RuntimeError):
    """The image encoder or its image processor could not be loaded from the given name or path."""


def _load_error(what, name_or_path, err):
    return ImageEncoderLoadError(
        f"cannot load the {what} {name_or_path!r} ({err.__class__.__name__}: {err}). Without network, pass a local "
        "from_pretrained directory of a CLIP model (--encoder DIR of mmn-extract or mmn-predict, or INPUT.VIDEO.ENCODER)")


def _from_pretrained(auto_class, name_or_path, what):
    try:
        return auto_class.from_pretrained(name_or_path)
    except (OSError, ValueError, TypeError, KeyError) as err:
        raise _load_error(what, name_or_path, err) from None


def resolve_encoder_device(name=None):
    """``name`` as a torch device; None or "auto" means CUDA when available, else CPU."""
    if name in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


class ImageEncoder:
    """Frames (RGB uint8 H x W x 3 arrays) -> (n, D) float32 features, in batches, on one device.

    ``dtype "bf16"`` runs the forward pass under bf16 autocast (meant for CUDA; features are returned in
    float32). ``preprocess_s`` / ``encode_s`` accumulate the time spent in the image processor and in the
    model (the encode time waits for the device, so it is real compute time).
    """

    def __init__(self, model, processor, device, dtype="fp32", batch_size=64, name=""):
        if dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.model = model.to(device).eval()
        self.processor = processor
        self.device = device
        self.dtype = dtype
        self.batch_size = batch_size
        self.name = name
        self.preprocess_s = 0.0
        self.encode_s = 0.0

    @property
    def dim(self):
        return self.model.config.projection_dim

    def _autocast(self):
        if self.dtype == "bf16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    @torch.no_grad()
    def encode_batch(self, frames):
        """One forward pass over ``frames`` (a list of RGB arrays); returns (len(frames), D) float32."""
        t0 = time.perf_counter()
        pixels = self.processor(images=list(frames), return_tensors="pt")["pixel_values"]
        t1 = time.perf_counter()
        pixels = pixels.to(self.device, non_blocking=True)
        with self._autocast():
            embeds = self.model(pixel_values=pixels).image_embeds
        out = embeds.float().cpu().numpy()  # .cpu() waits for the device
        self.preprocess_s += t1 - t0
        self.encode_s += time.perf_counter() - t1
        return out

    def encode(self, frames):
        """All of ``frames`` in batches of ``batch_size``; returns (n, D) float32."""
        frames = list(frames)
        parts = [self.encode_batch(frames[i:i + self.batch_size]) for i in range(0, len(frames), self.batch_size)]
        return np.concatenate(parts) if parts else np.zeros((0, self.dim), np.float32)


def _load_model_strictly(name_or_path):
    """The vision model + projection; every one of its weights must come from the checkpoint.

    ``from_pretrained`` alone only warns when weights are missing (a CLIPVisionModel saved without its
    projection) and re-initialises them at random: the features would silently be noise.
    """
    from transformers import AutoConfig, CLIPConfig, CLIPVisionModelWithProjection

    try:
        config = AutoConfig.from_pretrained(name_or_path)
        kwargs = {}
        if isinstance(config, CLIPConfig):
            # a whole CLIP checkpoint: the projection's size is the top-level projection_dim; its nested
            # vision_config may carry another (the default 512), which would not fit the projection weights
            vision = config.vision_config
            vision.projection_dim = config.projection_dim
            kwargs["config"] = vision
        model, info = CLIPVisionModelWithProjection.from_pretrained(name_or_path, output_loading_info=True, **kwargs)
    except (OSError, ValueError, TypeError, KeyError) as err:
        raise _load_error("image encoder", name_or_path, err) from None
    except RuntimeError as err:  # size mismatches (e.g. a projection of another size than the config says)
        raise ImageEncoderLoadError(f"{name_or_path}: the checkpoint's weights do not fit its CLIP vision config "
                                    f"({err})") from None
    missing = sorted(info.get("missing_keys") or ())
    if missing:
        raise ImageEncoderLoadError(
            f"{name_or_path}: the checkpoint lacks {len(missing)} weight(s) of the CLIP vision model with projection, "
            f"e.g. {missing[:3]}: they would be random. Give a CLIPModel or CLIPVisionModelWithProjection checkpoint")
    return model


@functools.lru_cache(maxsize=2)
def _load(name_or_path):
    from transformers import AutoImageProcessor

    model = _load_model_strictly(name_or_path)
    processor = _from_pretrained(AutoImageProcessor, name_or_path, "image processor")
    return model, processor


def load_image_encoder(name_or_path=DEFAULT_ENCODER, device=None, dtype="fp32", batch_size=64):
    """An ``ImageEncoder`` of the CLIP vision model + projection at ``name_or_path`` (hub name or local dir)."""
    if not name_or_path:
        raise ImageEncoderLoadError("no image encoder given (empty name)")
    device = resolve_encoder_device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ImageEncoderLoadError(f"device {device} requested but CUDA is not available (use --device cpu)")
    if dtype not in DTYPES:
        raise ImageEncoderLoadError(f"dtype must be one of {DTYPES}, got {dtype!r}")
    if os.path.isdir(name_or_path):  # a local directory is recorded (HDF5 attributes) by its absolute path
        name_or_path = os.path.abspath(name_or_path)
    model, processor = _load(name_or_path)
    return ImageEncoder(model, processor, device, dtype=dtype, batch_size=batch_size, name=name_or_path)
