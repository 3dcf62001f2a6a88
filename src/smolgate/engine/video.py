"""Video input for SmolVLM2: PyAV decoding, the reference frame sampling, per-frame resize.

Frames are sampled as transformers' `SmolVLMVideoProcessor.sample_frames` does (about `fps` frames per second, at
most `max_frames`, skipping `skip_secs` at both ends of long clips) and every frame becomes one unsplit square
image. The frame index is the position in decode order, as in transformers' PyAV reader.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image

from smolgate.engine.image import MAX_IMAGE_SIZE, fit_longest_edge


@dataclass(frozen=True, slots=True)
class VideoInfo:
    total_frames: int
    fps: float
    width: int
    height: int

    @property
    def duration(self) -> float:
        # Frame count / average rate, not the container's duration field: this is what the reference uses.
        return self.total_frames / self.fps if self.fps else 0.0


@dataclass(frozen=True, slots=True)
class VideoConfig:
    fps: float = 1.0  # video_sampling.fps
    max_frames: int = 64  # video_sampling.max_frames
    skip_secs: float = 1.0
    resize_edge: int = 512  # first resize: longest edge (aspect kept, even edges)
    tile_size: int = 512  # second resize: square encoder input


@dataclass(frozen=True, slots=True)
class SampledVideo:
    frames: list[Image.Image]  # RGB, in time order (original resolution unless decode_video got a transform)
    indices: list[int]
    info: VideoInfo

    @property
    def timestamps(self) -> list[float]:
        return [i / self.info.fps for i in self.indices]


def sample_frames(info: VideoInfo, fps: float, max_frames: int, skip_secs: float = 1.0) -> list[int]:
    wanted = max(1, min(round(fps * info.duration), max_frames))
    start, end = 0, info.total_frames - 1
    # Only clips comfortably longer than the frame budget lose their first and last `skip_secs`.
    if skip_secs > 0 and info.duration - 2 * skip_secs > max_frames * fps:
        start, end = int(skip_secs * info.fps), int(info.total_frames - skip_secs * info.fps)
    start, end = max(0, start), min(end, info.total_frames - 1)
    if start >= end:
        start, end = 0, info.total_frames - 1
    return [int(i) for i in np.unique(np.linspace(start, end, wanted, dtype=int))]


def decode_video(
    source: bytes | str | Path,
    cfg: VideoConfig,
    transform: Callable[[Image.Image], Image.Image] | None = None,
) -> SampledVideo:
    """Decode up to the last sampled frame; `transform` (e.g. resize_frame) runs per kept frame, so full-size
    frames are never all held at once. Undecodable input raises ValueError (a client error)."""
    try:
        with av.open(io.BytesIO(source) if isinstance(source, bytes) else str(source), mode="r") as container:
            if not container.streams.video:
                raise ValueError("the file has no video stream")
            stream = container.streams.video[0]
            info = VideoInfo(_count_frames(container, stream), _fps(stream), stream.width, stream.height)
            if info.total_frames == 0 or info.fps == 0:
                raise ValueError("the video has no frames")
            indices = sample_frames(info, cfg.fps, cfg.max_frames, cfg.skip_secs)
            wanted, last = set(indices), indices[-1]
            frames: list[Image.Image] = []
            for i, frame in enumerate(container.decode(stream)):
                if i > last:
                    break
                if i in wanted:
                    image = Image.fromarray(frame.to_ndarray(format="rgb24"))
                    frames.append(transform(image) if transform else image)
    except av.FFmpegError as exc:
        raise ValueError(f"cannot decode video: {exc}") from exc
    if not frames:
        raise ValueError("cannot decode video: no frame could be decoded")
    # The header may promise more frames than the stream holds; keep indices aligned with what was decoded.
    return SampledVideo(frames, indices[: len(frames)], info)


def resize_frame(frame: Image.Image, cfg: VideoConfig) -> Image.Image:
    """Longest edge to `resize_edge`, then squash to the square tile: frames are never split into tiles."""
    height, width = fit_longest_edge(frame.height, frame.width, min(cfg.resize_edge, MAX_IMAGE_SIZE))
    frame = frame.resize((width, height), resample=Image.Resampling.LANCZOS)
    return frame.resize((cfg.tile_size, cfg.tile_size), resample=Image.Resampling.LANCZOS)


def _count_frames(container: av.container.InputContainer, stream: av.video.stream.VideoStream) -> int:
    if stream.frames:
        return int(stream.frames)
    # Some containers (webm, mkv) carry no frame count; count packets and rewind instead of failing.
    count = sum(1 for packet in container.demux(stream) if packet.size)
    container.seek(0)
    return count


def _fps(stream: av.video.stream.VideoStream) -> float:
    rate: Fraction | None = stream.average_rate or stream.guessed_rate or stream.base_rate
    return float(rate) if rate else 0.0
