"""Synthetic videos and randomly initialised CLIP encoders, for the tests and the extraction benchmark.

Nothing here is downloaded: the videos are written with PyAV (moving shapes on a coloured background,
known frame times), the encoders are ``CLIPVisionModelWithProjection(CLIPVisionConfig(...))`` with random
weights plus a ``CLIPImageProcessor``, saved with ``save_pretrained`` so that they are loaded by the
same ``from_pretrained`` code as a real checkpoint.
"""
import fractions
import os

import numpy as np

# ViT-B/32 as openai/clip-vit-base-patch32 (vision tower + 512-d projection) and its image processor
BASE_B32 = dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                image_size=224, patch_size=32, projection_dim=512)
TINY = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
            image_size=32, patch_size=8, projection_dim=16)


def frame_image(k, width, height, rng_seed=0):
    """RGB uint8 frame ``k``: a background hue drifting with k, a square and a bar moving across."""
    img = np.empty((height, width, 3), np.uint8)
    img[...] = ((37 * k) % 256, (91 + 13 * k) % 256, (160 + 7 * k) % 256)
    side = max(4, height // 4)
    x = (3 * k) % max(1, width - side)
    y = (2 * k) % max(1, height - side)
    img[y:y + side, x:x + side] = (255, 255 - (5 * k) % 256, 0)
    bar = (k * 5) % width
    img[:, bar:bar + 2] = (0, 0, 255)
    return img


def write_video(path, frame_times, width=64, height=48, codec="mpeg4", time_base=fractions.Fraction(1, 1000),
                rate=25, display_rotation=0):
    """Write the frames of ``frame_image`` at ``frame_times`` (seconds, increasing) into ``path``.

    Timestamps are exact multiples of ``time_base``; the container's duration is the last frame time plus
    one nominal frame (1 / ``rate``); ``display_rotation`` (degrees counter-clockwise) stores the frames
    sideways with a display matrix, as phones do. Returns the frame times as stored (rounded to ``time_base``).
    """
    import av

    stored = []
    with av.open(path, "w") as container:
        stream = container.add_stream(codec, rate=rate)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.time_base = time_base
        stream.codec_context.time_base = time_base
        stream.codec_context.gop_size = 12
        if display_rotation:
            stream.set_display_rotation(display_rotation)
        for k, t in enumerate(frame_times):
            frame = av.VideoFrame.from_ndarray(frame_image(k, width, height), format="rgb24")
            frame.pts = int(round(t / time_base))
            frame.time_base = time_base
            stored.append(float(frame.pts * time_base))
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return stored


def constant_rate_times(duration, rate):
    """Frame times 0, 1/rate, ... of a constant-rate video of ``duration`` seconds."""
    return [k / rate for k in range(int(round(duration * rate)))]


def variable_rate_times(duration, seed=0, gaps=(0.033, 0.1, 0.25, 0.04)):
    """Frame times with random gaps from ``gaps`` (a variable-frame-rate video) ending before ``duration``."""
    rng = np.random.default_rng(seed)
    times, t = [], 0.0
    while t < duration - max(gaps):
        times.append(round(t, 3))
        t += float(rng.choice(gaps))
    return times


def save_random_clip(target_dir, size="tiny", seed=0, projection_dim=None):
    """A ``from_pretrained`` directory with a randomly initialised CLIP vision model + projection and its
    image processor; ``size`` "tiny" (32 px input, 16-d) or "base" (ViT-B/32, 224 px, 512-d);
    ``projection_dim`` overrides the feature size (e.g. a tiny tower with ViT-B/32's 512-d output)."""
    import torch
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

    dims = dict({"tiny": TINY, "base": BASE_B32}[size])
    if projection_dim:
        dims["projection_dim"] = projection_dim
    torch.manual_seed(seed)
    model = CLIPVisionModelWithProjection(CLIPVisionConfig(**dims))
    os.makedirs(target_dir, exist_ok=True)
    model.save_pretrained(target_dir)
    side = dims["image_size"]
    CLIPImageProcessor(size={"shortest_edge": side}, crop_size={"height": side, "width": side}).save_pretrained(target_dir)
    return target_dir


def write_without_video_frames(path, with_video_stream=True):
    """A valid container holding one second of silent audio and a video stream without a single frame
    (``with_video_stream``) or no video stream at all: videos that open but hold nothing to encode."""
    import av

    with av.open(path, "w") as container:
        video = container.add_stream("mpeg4", rate=10) if with_video_stream else None
        if video is not None:
            video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        audio = container.add_stream("mp2", rate=44100)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 44100), np.int16), format="s16", layout="mono")
        frame.sample_rate = 44100
        for packet in [*audio.encode(frame), *audio.encode()]:
            container.mux(packet)
        if video is not None:
            for packet in video.encode():
                container.mux(packet)
