"""SmolVLM processor: chat messages -> token ids + pixel tensors, configured from a checkpoint directory.

Reads the same files transformers' `SmolVLMProcessor` / `Idefics3Processor` read (tokenizer.json,
tokenizer_config.json, preprocessor_config.json, processor_config.json, chat_template.json / .jinja) and
produces the same `input_ids` and `pixel_values` (tests/engine/test_processor_parity.py).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from smolgate.engine.image import ImageConfig, preprocess_image, to_pixel_values
from smolgate.engine.messages import ChatMessage, ImagePart, VideoPart
from smolgate.engine.prompt import MediaTokens, expand_media, pick_template, render_chat
from smolgate.engine.tokenizer import Tokenizer
from smolgate.engine.video import VideoConfig, decode_video, resize_frame


@dataclass(frozen=True, slots=True)
class ProcessedInputs:
    input_ids: torch.Tensor  # int64 [1, T]
    pixel_values: torch.Tensor | None  # float32 [n_tiles, 3, M, M], in the order of the <image> runs
    prompt: str  # the expanded prompt that was tokenized


class SmolVLMProcessor:
    def __init__(
        self,
        tokenizer: Tokenizer,
        media: MediaTokens,
        image: ImageConfig,
        video: VideoConfig,
        image_seq_len: int,
        chat_template: str | None,
    ) -> None:
        self.tokenizer = tokenizer  # the engine's tokenizer wrapper; `.hf` is the `tokenizers.Tokenizer`
        self.media = media
        self.image_token_id = _token_id(tokenizer, media.image)
        self.image_config = image
        self.video_config = video
        self.image_seq_len = image_seq_len
        self.chat_template = chat_template

    @property
    def tile_size(self) -> int:
        return self.image_config.tile_size

    @classmethod
    def from_pretrained(cls, path: str | Path) -> SmolVLMProcessor:
        path = Path(path)
        processor = _read_json(path / "processor_config.json")
        # transformers >= 5 may save the sub-processors nested in processor_config.json.
        image_dict = processor.get("image_processor") or _read_json(path / "preprocessor_config.json")
        video_dict = processor.get("video_processor") or image_dict
        image = _image_config(image_dict)
        return cls(
            tokenizer=Tokenizer.from_dir(path),
            media=_media_tokens(_read_json(path / "tokenizer_config.json")),
            image=image,
            video=_video_config(video_dict, image.tile_size),
            image_seq_len=_image_seq_len(processor, path),
            chat_template=_chat_template(path, processor),
        )

    def __call__(
        self, messages: Sequence[ChatMessage], add_generation_prompt: bool = True
    ) -> ProcessedInputs:
        media = self.media
        pixels: list[torch.Tensor] = []
        replacements: list[tuple[str, str]] = []
        for part in (p for m in messages for p in m.content):
            if isinstance(part, ImagePart):
                values, tiles = preprocess_image(part.image, self.image_config)
                pixels.append(values)
                replacements.append(("image", media.split_image(tiles.rows, tiles.cols, self.image_seq_len)))
            elif isinstance(part, VideoPart):
                clip = decode_video(part.video, self.video_config, self._resize_frame)
                pixels.append(to_pixel_values(clip.frames, self.image_config))
                text = media.video_frames(clip.timestamps, clip.info.duration, self.image_seq_len)
                replacements.append(("video", text))
        prompt = expand_media(self.apply_chat_template(messages, add_generation_prompt), media, replacements)
        ids = torch.tensor([self.tokenizer.encode(prompt)], dtype=torch.long)
        # numpy concatenation: a torch.cat this size would run OpenMP-parallel in the caller's thread (see image.py)
        pixel_values = torch.from_numpy(np.concatenate([p.numpy() for p in pixels])) if pixels else None
        return ProcessedInputs(ids, pixel_values, prompt)

    def apply_chat_template(self, messages: Sequence[ChatMessage], add_generation_prompt: bool = True) -> str:
        """The rendered conversation with one `<image>` / `<video>` placeholder per media part."""
        template = pick_template(self.chat_template, messages)
        return render_chat(template, messages, add_generation_prompt, **self._special_tokens())

    def _resize_frame(self, frame: Image.Image) -> Image.Image:
        return resize_frame(frame, self.video_config)

    def _special_tokens(self) -> dict[str, str]:
        # Templates may reference bos_token / eos_token; transformers passes the special-token map to the renderer.
        tok = self.tokenizer
        return {
            k: v for k, v in (("bos_token", tok.bos_token), ("eos_token", tok.eos_token)) if v is not None
        }


def _media_tokens(tokenizer_config: dict[str, Any]) -> MediaTokens:
    extra = tokenizer_config.get("extra_special_tokens")
    extra = extra if isinstance(extra, dict) else {}  # older configs store a list here
    default = MediaTokens()
    return MediaTokens(
        image=extra.get("image_token", default.image),
        video=extra.get("video_token", default.video),
        fake_around_image=extra.get("fake_image_token", default.fake_around_image),
        global_image=extra.get("global_image_token", default.global_image),
    )


def _token_id(tokenizer: Tokenizer, token: str) -> int:
    token_id = tokenizer.token_to_id(token)
    if token_id is None:
        raise ValueError(f"the tokenizer has no {token!r} token")
    return token_id


def _image_config(d: dict[str, Any]) -> ImageConfig:
    normalize = d.get("do_normalize", True)
    return ImageConfig(
        tile_size=int(d["max_image_size"]["longest_edge"]),
        longest_edge=int(d["size"]["longest_edge"]),
        split=bool(d.get("do_image_splitting", True)),
        resize=bool(d.get("do_resize", True)),
        rescale_factor=float(d.get("rescale_factor", 1 / 255)) if d.get("do_rescale", True) else 1.0,
        mean=tuple(d.get("image_mean", (0.5,) * 3)) if normalize else (0.0,) * 3,
        std=tuple(d.get("image_std", (0.5,) * 3)) if normalize else (1.0,) * 3,
    )


def _video_config(d: dict[str, Any], tile_size: int) -> VideoConfig:
    sampling = d.get("video_sampling") or {}
    # transformers' SmolVLMVideoProcessor lets `size` override video_sampling.video_size when a config holds
    # both (every published SmolVLM2 preprocessor_config.json does), so frames first go to the image
    # `size` longest edge (2048 / 1536), then to the square tile. We follow it for parity.
    size = d.get("size") or sampling.get("video_size") or {"longest_edge": tile_size}
    return VideoConfig(
        fps=float(sampling.get("fps", d.get("fps") or 1)),
        max_frames=int(sampling.get("max_frames", d.get("num_frames") or 64)),
        resize_edge=int(size["longest_edge"]),
        tile_size=tile_size,
    )


def _image_seq_len(processor: dict[str, Any], path: Path) -> int:
    if "image_seq_len" in processor:
        return int(processor["image_seq_len"])
    config = _read_json(path / "config.json")  # (image_size / patch_size)^2 / scale_factor^2
    vision = config.get("vision_config") or {}
    if "image_size" in vision and "patch_size" in vision:
        side = int(vision["image_size"]) // int(vision["patch_size"])
        return side**2 // int(config.get("scale_factor", 2)) ** 2
    raise ValueError(f"{path}: no image_seq_len in processor_config.json and no vision config to derive it")


def _chat_template(path: Path, processor: dict[str, Any]) -> str | None:
    """Same precedence as transformers: processor_config, chat_template.json, chat_template.jinja, tokenizer."""
    if processor.get("chat_template"):
        return str(processor["chat_template"])
    if (path / "chat_template.json").is_file():
        return str(_read_json(path / "chat_template.json")["chat_template"])
    if (path / "chat_template.jinja").is_file():
        return (path / "chat_template.jinja").read_text(encoding="utf-8")
    template = _read_json(path / "tokenizer_config.json").get("chat_template")
    return template if isinstance(template, str) else None


def _read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
