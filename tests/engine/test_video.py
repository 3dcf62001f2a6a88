"""Video input against transformers' SmolVLM video path, on clips PyAV encodes here.

The reference runs through `fixtures.reference_video_backend()`: its frame sampling, resize geometry,
normalisation and prompt building are its own; only torchvision's LANCZOS kernel (torchvision cannot be installed
beside our torch) is replaced by transformers' PIL LANCZOS resize. So the pixels compared here are "reference
pipeline, PIL kernel"; torchvision's own LANCZOS output is not compared.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
import torch
from fixtures import (
    IMAGE_TOKEN_ID,
    build_checkpoint_dir,
    reference_processor,
    reference_video_backend,
    reference_video_processor_class,
)
from PIL import Image

from smolgate.engine.messages import ChatMessage, ImagePart, TextPart, VideoPart
from smolgate.engine.processor import SmolVLMProcessor
from smolgate.engine.video import VideoConfig, VideoInfo, decode_video, sample_frames


def write_video(path: Path, n_frames: int, fps: int, width: int, height: int, codec: str) -> Path:
    """Each frame has its own colour and a moving bar, so a wrong frame index changes the pixels."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        ramp = np.linspace(0, 255, width, dtype=np.uint8)[None, :]
        for i in range(n_frames):
            frame = np.zeros((height, width, 3), np.uint8)
            frame[..., 0] = (i * 37) % 256
            frame[..., 1] = ramp
            bar = (i * width) // n_frames
            frame[:, bar : bar + max(width // 8, 2), 2] = 255
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    return path


# name -> (n_frames, fps, width, height, codec, checkpoint variant, processor overrides, expected intro)
CLIPS: dict[str, tuple[Any, ...]] = {
    # 3.5 s: short clip, every second sampled from the whole clip
    "h264_wide_256m": (
        35,
        10,
        160,
        90,
        "libx264",
        "smolvlm2-256m",
        {},
        "four frames from a 0:00:03 [H:MM:SS] video.",
    ),
    # 12 s > 8 frames + 2 s: the first and last second are skipped, 8 frames spread over the rest
    "mpeg4_tall_2.2b": (
        60,
        5,
        64,
        96,
        "mpeg4",
        "smolvlm2-2.2b",
        {"max_frames": 8},
        "eight frames from a 0:00:12 [H:MM:SS] video.",
    ),
}


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path]]:
    root = tmp_path_factory.mktemp("video")
    out = {}
    for name, (n, fps, w, h, codec, variant, overrides, _) in CLIPS.items():
        video = write_video(root / f"{name}.mp4", n, fps, w, h, codec)
        out[name] = (video, build_checkpoint_dir(root / name, variant, **overrides))
    return out


def all_frames(metadata: Any, **_: Any) -> np.ndarray:
    return np.arange(metadata.total_num_frames)


def reference_video_inputs(
    ref: Any, video: Path, conversation: list[dict[str, Any]]
) -> tuple[dict, list[int]]:
    """Decode with transformers' PyAV reader, then let the reference processor sample, resize and expand.

    Returns the reference inputs and the frame indices its `sample_frames` returned during the call.
    """
    from transformers.video_utils import read_video_pyav

    frames, metadata = read_video_pyav(str(video), sample_indices_fn=all_frames)
    text = ref.apply_chat_template(conversation, add_generation_prompt=True)
    sampled: list[list[int]] = []
    sample = ref.video_processor.sample_frames

    def spy(*args: Any, **kwargs: Any) -> np.ndarray:
        sampled.append(indices := sample(*args, **kwargs))
        return indices

    ref.video_processor.sample_frames = spy
    try:
        with reference_video_backend():
            out = ref(
                text=text,
                videos=[frames],
                video_metadata=[metadata],
                do_sample_frames=True,
                return_tensors="pt",
            )
    finally:
        del ref.video_processor.sample_frames
    assert len(sampled) == 1
    return out, sampled[0].tolist()


@pytest.mark.parametrize("name", list(CLIPS))
def test_video_matches_reference(clips: dict[str, tuple[Path, Path]], name: str) -> None:
    video, checkpoint = clips[name]
    ours, ref = SmolVLMProcessor.from_pretrained(checkpoint), reference_processor(checkpoint)
    messages = [ChatMessage("user", [VideoPart(video), TextPart("What happens?")])]
    conversation = [
        {"role": "user", "content": [{"type": "video"}, {"type": "text", "text": "What happens?"}]}
    ]
    result = ours(messages)
    expected, expected_indices = reference_video_inputs(ref, video, conversation)

    indices = decode_video(video, ours.video_config).indices
    assert indices == expected_indices
    assert CLIPS[name][-1] in result.prompt
    assert result.prompt == ref.tokenizer.decode(expected["input_ids"][0].tolist(), skip_special_tokens=False)
    assert result.input_ids.tolist() == expected["input_ids"].tolist()
    assert (
        result.pixel_values.shape
        == expected["pixel_values"][0].shape
        == (len(indices), 3, ours.tile_size, ours.tile_size)
    )
    torch.testing.assert_close(result.pixel_values, expected["pixel_values"][0], atol=1e-6, rtol=0)
    assert int((result.input_ids == IMAGE_TOKEN_ID).sum()) == len(indices) * ours.image_seq_len


@pytest.mark.parametrize("name", list(CLIPS))
def test_decoded_frames_equal_reference_reader(clips: dict[str, tuple[Path, Path]], name: str) -> None:
    from transformers.video_utils import read_video_pyav

    video, checkpoint = clips[name]
    ours = decode_video(video, SmolVLMProcessor.from_pretrained(checkpoint).video_config)
    frames, metadata = read_video_pyav(str(video), sample_indices_fn=all_frames)
    assert (ours.info.total_frames, ours.info.fps, ours.info.duration) == (
        metadata.total_num_frames,
        metadata.fps,
        metadata.duration,
    )
    for index, frame in zip(ours.indices, ours.frames, strict=True):
        np.testing.assert_array_equal(np.asarray(frame), frames[index])
    assert ours.timestamps == [i / metadata.fps for i in ours.indices]


def test_video_bytes_equal_video_path(clips: dict[str, tuple[Path, Path]]) -> None:
    video, checkpoint = clips["h264_wide_256m"]
    processor = SmolVLMProcessor.from_pretrained(checkpoint)
    from_path = processor([ChatMessage("user", [VideoPart(video)])])
    from_bytes = processor([ChatMessage("user", [VideoPart(video.read_bytes())])])
    assert from_path.input_ids.tolist() == from_bytes.input_ids.tolist()
    assert torch.equal(from_path.pixel_values, from_bytes.pixel_values)


@pytest.mark.parametrize("video_fps", [1.0, 7.5, 10.0, 24.0, 29.97, 60.0])
def test_sample_frames_matches_reference(video_fps: float) -> None:
    from transformers.video_utils import VideoMetadata

    reference = reference_video_processor_class()(
        video_sampling={"fps": 1, "max_frames": 64, "video_size": {"longest_edge": 32}}
    )
    for total in (1, 2, 9, 35, 64, 250, 1000, 4000, 20000):
        for fps, max_frames in ((1, 64), (2, 64), (0.5, 8), (1, 8), (3, 4)):
            info = VideoInfo(total, video_fps, 64, 48)
            meta = VideoMetadata(total_num_frames=total, fps=video_fps, duration=info.duration)
            expected = reference.sample_frames(meta, num_frames=max_frames, fps=fps).tolist()
            assert sample_frames(info, fps, max_frames) == expected, (total, video_fps, fps, max_frames)


def test_mixed_image_and_video_keep_prompt_order(clips: dict[str, tuple[Path, Path]]) -> None:
    """transformers cannot batch both modalities (both return `pixel_values`); we keep placeholder order."""
    video, checkpoint = clips["h264_wide_256m"]
    processor = SmolVLMProcessor.from_pretrained(checkpoint)
    image = Image.fromarray(np.full((100, 300, 3), 90, np.uint8))
    video_only = processor([ChatMessage("user", [VideoPart(video)])])
    image_only = processor([ChatMessage("user", [ImagePart(image)])])
    mixed = processor([ChatMessage("user", [VideoPart(video), TextPart("then"), ImagePart(image)])])
    assert torch.equal(mixed.pixel_values, torch.cat([video_only.pixel_values, image_only.pixel_values]))
    assert mixed.prompt.index("Frame from 00:00:") < mixed.prompt.index("<row_1_col_1>")


def test_container_without_frame_count_is_counted(tmp_path: Path) -> None:
    """webm stores no frame count (the reference reader would see 0 frames); we count packets instead."""
    video = write_video(tmp_path / "clip.webm", 20, 8, 48, 32, "libvpx-vp9")
    with av.open(str(video)) as container:
        assert container.streams.video[0].frames == 0
    clip = decode_video(video, VideoConfig(tile_size=32, resize_edge=32))
    assert clip.info.total_frames == 20 and clip.info.fps == 8.0
    # 2.5 s at 1 fps: round(2.5) == 2 frames (Python rounds half to even, as the reference does)
    assert clip.indices == sample_frames(clip.info, 1.0, 64) == [0, 19]
    assert len(clip.frames) == 2


@pytest.mark.parametrize("payload", [b"not a video at all", b""])
def test_undecodable_video_is_a_value_error(payload: bytes) -> None:
    with pytest.raises(ValueError, match="video"):
        decode_video(payload, VideoConfig())
