"""Decoding with PyAV: the frames shown at a fixed sampling rate, with the stream's own timestamps.

Row k of a video's features describes the clip ``[k / fps, (k + 1) / fps)`` (the last one ends at the
duration), and is computed from the frame *on screen* at ``k / fps``: the last frame whose presentation
time is <= ``k / fps`` (the first frame when the video starts later). Times come from each frame's
``pts x time_base`` relative to the stream start, never from an assumed constant frame rate, so
variable-frame-rate videos are sampled where their frames really are. A video of duration ``d`` gives
``ceil(d x fps)`` rows (at least one; a last clip shorter than 1 ms, time-base rounding, gets none).

The duration is the stream's (or, when the stream does not say, the container's) duration metadata;
without either, or when the decoded frames run past it, the end of the last decoded frame.
"""
import math
import os

import numpy as np

from ..utils.errors import MMNError

# sample times within this many seconds of a frame time are taken as equal (float noise of time bases)
TIME_EPS = 1e-6
# a trailing clip shorter than this gets no row: re-timing a stream to the container's time base (mp4
# stores a 30 fps video timed in ms with 1/16000 ticks) lengthens a 30 s video to 30.0003 s, which
# must still give the 15 rows of 30 s at 0.5 fps, not a 16th for its last 0.3 ms
DURATION_SLACK = 1e-3


class VideoDecodeError(MMNError, ValueError):
    """A video that cannot be decoded or holds no frame; the message names the file."""


def _import_av():
    try:
        import av
    except ImportError:
        raise VideoDecodeError('decoding videos needs PyAV: pip install av (or pip install -e ".[video]")') from None
    return av


def num_samples(duration, fps):
    """Rows of a video of ``duration`` seconds sampled at ``fps``: ceil(duration x fps), at least 1
    (a last clip shorter than DURATION_SLACK does not count)."""
    return max(1, math.ceil((duration - DURATION_SLACK) * fps))


def upright_rgb(frame):
    """The frame as RGB uint8 H x W x 3, turned as a player shows it: phone videos store their pixels
    sideways plus a display matrix (``frame.rotation``, degrees counter-clockwise, multiples of 90 in
    practice), which FFmpeg's players apply and ``to_ndarray`` does not. Mirroring in the matrix is ignored."""
    rgb = frame.to_ndarray(format="rgb24")
    quarter_turns = round((frame.rotation or 0) / 90) % 4
    return np.ascontiguousarray(np.rot90(rgb, quarter_turns)) if quarter_turns else rgb


def _metadata_duration(container, stream):
    """The video stream's duration (s) from the stream's metadata, else from the container's (mkv / webm
    store only the latter), measured from the stream's own start; None when neither says."""
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        # container times are in AV_TIME_BASE units (us) from the earliest stream's start
        container_start = (container.start_time or 0) / 1e6
        stream_start = float(stream.start_time * stream.time_base) if stream.start_time is not None else container_start
        return container.duration / 1e6 - (stream_start - container_start)
    return None


class SampledVideo:
    """Iterate ``(timestamp_s, rgb uint8 H x W x 3)`` of the frames shown at ``k / fps``, k = 0, 1, ...

    After the iteration, ``duration`` (seconds), ``timestamps`` (one per row) and ``decode_frames``
    (frames decoded) are set; an undecodable file, one without a video stream or without a single
    decodable frame raises VideoDecodeError naming it. ``expected_rows`` is the row count that the
    metadata duration announces (None without metadata), for progress bars.
    """

    def __init__(self, path, fps, threads="AUTO"):
        if not (fps > 0 and math.isfinite(fps)):
            raise ValueError(f"fps must be a positive number, got {fps!r}")
        self.path = path
        self.fps = float(fps)
        self.threads = threads
        self.duration = None
        self.timestamps = []
        self.decode_frames = 0
        self.expected_rows = None
        self.decode_s = 0.0  # set by whoever times the iteration (mmn.video.extract.extract_video)

    def _error(self, what):
        return VideoDecodeError(f"{self.path}: {what}")

    def __iter__(self):
        av = _import_av()
        self.duration, self.timestamps, self.decode_frames = None, [], 0  # a second iteration starts afresh
        if not os.path.isfile(self.path):
            raise self._error("no such file")
        try:
            container = av.open(self.path)
        except (av.FFmpegError, UnicodeDecodeError, ValueError) as err:
            raise self._error(f"cannot open as a video ({err.__class__.__name__}: {err})") from None
        try:
            if not container.streams.video:
                raise self._error("has no video stream")
            stream = container.streams.video[0]
            if self.threads:
                stream.thread_type = self.threads
            meta = _metadata_duration(container, stream)
            if meta is not None and meta > 0:
                self.expected_rows = num_samples(meta, self.fps)
            yield from self._sample(container, stream, meta, av)
        finally:
            container.close()

    def _sample(self, container, stream, meta, av):
        time_base = stream.time_base
        start = stream.start_time or 0
        rate = float(stream.average_rate) if stream.average_rate else None
        k = 0                      # next row; its sample time is k / fps
        prev = prev_time = None    # last decoded frame: on screen until the next one starts
        rgb_of = [None, None]      # (frame, its RGB array): converted once even when it serves several rows
        last_end = 0.0

        def rgb(frame):
            if rgb_of[0] is not frame:
                rgb_of[:] = frame, upright_rgb(frame)
            return rgb_of[1]

        try:
            for frame in container.decode(stream):
                if frame.pts is not None:
                    time = float((frame.pts - start) * time_base)
                else:  # no timestamp at all: the frame's position at the nominal rate
                    time = self.decode_frames / rate if rate else 0.0
                self.decode_frames += 1
                if prev is not None and time <= prev_time:
                    continue  # duplicate or out-of-order timestamp (broken stream): keep presentation order
                frame_len = float(frame.duration * time_base) if frame.duration else (1 / rate if rate else 0.0)
                last_end = max(last_end, time + frame_len)
                # the rows sampled before this frame starts show the previous frame (or, when the video
                # starts after them, this first frame)
                while k / self.fps < time - TIME_EPS:
                    shown, shown_time = (prev, prev_time) if prev is not None else (frame, time)
                    self.timestamps.append(shown_time)
                    yield shown_time, rgb(shown)
                    k += 1
                prev, prev_time = frame, time
        except av.FFmpegError as err:
            raise self._error(f"decoding failed after {self.decode_frames} frame(s) "
                              f"({err.__class__.__name__}: {err})") from None
        if prev is None:
            raise self._error("holds no decodable frame")
        self.duration = meta if meta is not None and meta > prev_time else max(last_end, prev_time)
        if self.duration <= 0:  # a single frame without any duration information
            self.duration = 1 / rate if rate else 1 / self.fps
        # the remaining rows show the last frame, which stays on screen until the end
        while k < num_samples(self.duration, self.fps):
            self.timestamps.append(prev_time)
            yield prev_time, rgb(prev)
            k += 1
