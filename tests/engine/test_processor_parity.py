"""Our SmolVLM processor against transformers' (PIL image backend), both built from the same checkpoint files."""

from __future__ import annotations

import functools
import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from fixtures import EOS_TOKEN_ID, IMAGE_TOKEN_ID, build_checkpoint_dir, reference_processor
from PIL import Image

from smolgate.engine.image import MAX_IMAGE_SIZE, fit_longest_edge
from smolgate.engine.messages import ChatMessage, ImagePart, Part, TextPart, VideoPart
from smolgate.engine.processor import SmolVLMProcessor


def photo(width: int, height: int, seed: int = 0) -> Image.Image:
    """Smooth gradients, hard edges and noise: enough structure that a wrong resize or crop shows."""
    rng = np.random.default_rng(seed)
    x = np.arange(width, dtype=np.float32)[None, :]
    y = np.arange(height, dtype=np.float32)[:, None]
    img = np.empty((height, width, 3), np.float32)
    img[..., 0] = 255 * x / max(width - 1, 1)
    img[..., 1] = 255 * y / max(height - 1, 1)
    img[..., 2] = 127 + 127 * np.sin(x / 7.0) * np.cos(y / 11.0)
    img += rng.integers(-20, 21, (height, width, 3), dtype=np.int8)
    img[height // 3 : height // 2, width // 4 : width // 2] = (250, 20, 40)
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))


def rgba(width: int, height: int) -> Image.Image:
    img = photo(width, height, seed=3).convert("RGBA")
    alpha = np.tile(np.linspace(0, 255, width, dtype=np.uint8), (height, 1))
    img.putalpha(Image.fromarray(alpha))
    return img


def palette_with_transparency() -> Image.Image:
    img = photo(320, 240, seed=4).quantize(colors=32)
    img.info["transparency"] = 5  # one palette entry is transparent: must be composited on white too
    return img


IMAGES: dict[str, Callable[[], Image.Image]] = {  # built once per session (see the cache below)
    "square": lambda: photo(600, 600),
    "wide": lambda: photo(1280, 360, seed=1),
    "tall": lambda: photo(300, 900, seed=2),
    "tiny": lambda: photo(21, 14, seed=5),  # upscaled to the longest edge
    "huge": lambda: photo(4600, 3100, seed=6),
    "panorama": lambda: photo(2000, 150, seed=7),  # one row of tiles
    "grayscale": lambda: photo(500, 400, seed=8).convert("L"),
    "rgba": lambda: rgba(400, 300),
    "palette_transparency": palette_with_transparency,
}


IMAGES = {name: functools.cache(build) for name, build in IMAGES.items()}


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("ckpt")
    return {v: build_checkpoint_dir(root / v, v) for v in ("smolvlm2-256m", "smolvlm2-2.2b", "smolvlm-v1")}


@pytest.fixture(scope="module")
def pair(checkpoints: dict[str, Path]) -> Callable[[str], tuple[SmolVLMProcessor, Any]]:
    cache: dict[str, tuple[SmolVLMProcessor, Any]] = {}

    def get(variant: str) -> tuple[SmolVLMProcessor, Any]:
        if variant not in cache:
            path = checkpoints[variant]
            cache[variant] = (SmolVLMProcessor.from_pretrained(path), reference_processor(path))
        return cache[variant]

    return get


def hf_conversation(messages: list[ChatMessage]) -> list[dict[str, Any]]:
    def part(p: Part) -> dict[str, str]:
        if isinstance(p, TextPart):
            return {"type": "text", "text": p.text}
        return {"type": "image" if isinstance(p, ImagePart) else "video"}

    return [{"role": m.role, "content": [part(p) for p in m.content]} for m in messages]


def reference_inputs(ref: Any, messages: list[ChatMessage]) -> dict[str, Any]:
    text = ref.apply_chat_template(hf_conversation(messages), add_generation_prompt=True)
    images = [p.image for m in messages for p in m.content if isinstance(p, ImagePart)]
    return ref(text=text, images=[images] if images else None, return_tensors="pt")


def assert_same(ours: Any, ref: dict[str, Any], ref_processor: Any) -> None:
    assert ours.input_ids.dtype == torch.long and ours.input_ids.shape[0] == 1
    assert ours.input_ids.tolist() == ref["input_ids"].tolist()
    assert (
        ref_processor.tokenizer.decode(ref["input_ids"][0].tolist(), skip_special_tokens=False) == ours.prompt
    )
    if "pixel_values" not in ref:
        assert ours.pixel_values is None
        return
    expected = ref["pixel_values"][0]  # [1, n, 3, M, M] -> [n, 3, M, M]; batch of one, so no padding tiles
    assert ours.pixel_values.dtype == torch.float32
    assert ours.pixel_values.shape == expected.shape
    torch.testing.assert_close(ours.pixel_values, expected.float(), atol=1e-6, rtol=0)
    # every tile fills one run of image_seq_len <image> tokens
    n_image_tokens = int((ours.input_ids == IMAGE_TOKEN_ID).sum())
    assert n_image_tokens == ours.pixel_values.shape[0] * ref_processor.image_seq_len


# Geometry (tiling, resizing) on both tile sizes, 512 px and 2.2B's 384 px; colour modes are converted to RGB
# before any geometry, the same code for every tile size, so on one.
COLOUR_MODES = ("grayscale", "rgba", "palette_transparency")
SINGLE_CASES = [(v, n) for v in ("smolvlm2-256m", "smolvlm2-2.2b") for n in IMAGES]
SINGLE_CASES = [(v, n) for v, n in SINGLE_CASES if v == "smolvlm2-256m" or n not in COLOUR_MODES]


@pytest.mark.parametrize(("variant", "name"), SINGLE_CASES)
def test_single_image_matches_reference(pair: Callable, variant: str, name: str) -> None:
    ours, ref = pair(variant)
    messages = [ChatMessage("user", [ImagePart(IMAGES[name]()), TextPart("What is in this image?")])]
    result = ours(messages)
    assert_same(result, reference_inputs(ref, messages), ref)
    assert result.pixel_values is not None and result.pixel_values.shape[-1] == ours.tile_size


def test_tile_counts_follow_the_aspect_ratio(pair: Callable) -> None:
    ours, _ = pair("smolvlm2-256m")
    tiles = {
        name: ours([ChatMessage("user", [ImagePart(IMAGES[name]())])]).pixel_values.shape[0]
        for name in ("square", "wide", "tall", "panorama")
    }
    # 2048 longest edge, 512 tiles: 600x600 -> 4x4 + global; 1280x360 -> 2048x576 -> 2x4 + global;
    # 300x900 -> 682x2048 -> 4x2 + global; 2000x150 -> 2048x154 -> 1x4 + global
    assert tiles == {"square": 17, "wide": 9, "tall": 9, "panorama": 5}


def test_multi_image_multi_turn_matches_reference(pair: Callable) -> None:
    ours, ref = pair("smolvlm2-256m")
    messages = [
        ChatMessage("system", [TextPart("Answer briefly.")]),
        ChatMessage(
            "user",
            [
                TextPart("Compare "),
                ImagePart(IMAGES["wide"]()),
                TextPart(" and "),
                ImagePart(IMAGES["tiny"]()),
            ],
        ),
        ChatMessage("assistant", [TextPart("The first is wider.")]),
        ChatMessage("user", [ImagePart(IMAGES["grayscale"]()), TextPart("And this one?")]),
    ]
    assert_same(ours(messages), reference_inputs(ref, messages), ref)


def test_smolvlm_v1_idefics3_naming_matches_reference(pair: Callable) -> None:
    ours, ref = pair("smolvlm-v1")
    assert type(ref).__name__ == "Idefics3Processor"
    messages = [
        ChatMessage("user", [ImagePart(IMAGES["tall"]()), TextPart("Read it."), ImagePart(IMAGES["rgba"]())])
    ]
    assert_same(ours(messages), reference_inputs(ref, messages), ref)


def test_tiny_tiles_for_test_models(tmp_path: Path) -> None:
    """A tiny vision tower (32 px, patch 8, shuffle 2) gets a consistent processor: 4 tokens per 32 px tile."""
    config = {"scale_factor": 2, "vision_config": {"image_size": 32, "patch_size": 8}}
    path = build_checkpoint_dir(tmp_path, "smolvlm2-256m", config=config)
    ours, ref = SmolVLMProcessor.from_pretrained(path), reference_processor(path)
    assert (ours.tile_size, ours.image_seq_len, ref.image_seq_len) == (32, 4, 4)
    messages = [ChatMessage("user", [ImagePart(IMAGES["wide"]()), TextPart("hi")])]
    result = ours(messages)
    assert_same(result, reference_inputs(ref, messages), ref)
    assert result.pixel_values.shape == (9, 3, 32, 32)


def test_image_bytes_apply_exif_orientation_like_reference(pair: Callable, tmp_path: Path) -> None:
    from transformers.image_utils import load_image

    ours, ref = pair("smolvlm2-2.2b")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise on display
    buf = io.BytesIO()
    photo(300, 200, seed=9).save(buf, format="JPEG", exif=exif, quality=90)
    (tmp_path / "rotated.jpg").write_bytes(buf.getvalue())
    result = ours([ChatMessage("user", [ImagePart(buf.getvalue())])])
    reference = reference_inputs(
        ref, [ChatMessage("user", [ImagePart(load_image(str(tmp_path / "rotated.jpg")))])]
    )
    assert_same(result, reference, ref)


def test_text_only_matches_reference(pair: Callable) -> None:
    ours, ref = pair("smolvlm2-256m")
    messages = [ChatMessage("user", [TextPart("Count: 1234567 — naïve café 🙂 <b>tags</b>\n\ttabs")])]
    result = ours(messages)
    assert_same(result, reference_inputs(ref, messages), ref)
    assert result.input_ids[0, 0].item() == 1  # <|im_start|> from the template, no extra BOS


CONVERSATIONS: dict[str, list[ChatMessage]] = {
    "text_only": [ChatMessage("user", [TextPart("Hello there!")])],
    "image_first": [ChatMessage("user", [ImagePart(b""), TextPart("Describe this image.")])],
    "image_after_text": [ChatMessage("user", [TextPart("Look: "), ImagePart(b""), TextPart(" ok?")])],
    "multi_turn": [
        ChatMessage("system", [TextPart("You are terse.")]),
        ChatMessage("user", [ImagePart(b""), ImagePart(b""), TextPart("Which is brighter?")]),
        ChatMessage("assistant", [TextPart("The second.")]),
        ChatMessage("user", [TextPart("Why?")]),
    ],
    "video": [ChatMessage("user", [VideoPart(b""), TextPart("What happens?")])],
}


@pytest.mark.parametrize("add_generation_prompt", [True, False])
@pytest.mark.parametrize("name", list(CONVERSATIONS))
def test_chat_template_matches_reference(pair: Callable, name: str, add_generation_prompt: bool) -> None:
    ours, ref = pair("smolvlm2-256m")
    messages = CONVERSATIONS[name]
    expected = ref.apply_chat_template(hf_conversation(messages), add_generation_prompt=add_generation_prompt)
    assert ours.apply_chat_template(messages, add_generation_prompt) == expected


def test_literal_placeholder_in_user_text_is_rejected(pair: Callable) -> None:
    ours, _ = pair("smolvlm2-256m")
    with pytest.raises(ValueError, match="placeholder"):
        ours([ChatMessage("user", [TextPart("what does <image> mean?")])])


def test_tokenizer_special_ids_match_reference(pair: Callable) -> None:
    ours, ref = pair("smolvlm2-256m")
    assert ours.image_token_id == ref.image_token_id == IMAGE_TOKEN_ID
    assert ours.tokenizer.token_to_id("<end_of_utterance>") == ref.tokenizer.eos_token_id == EOS_TOKEN_ID
    for tag in ("<global-img>", "<row_1_col_1>", "<row_6_col_6>", "<fake_token_around_image>"):
        assert ours.tokenizer.token_to_id(tag) == ref.tokenizer.convert_tokens_to_ids(tag)


@pytest.mark.parametrize("longest", [384, 512, 1536, 2048, 5000])
def test_longest_edge_geometry_matches_reference(longest: int) -> None:
    from transformers.models.smolvlm.image_processing_pil_smolvlm import get_resize_output_image_size

    sizes = [
        (1, 1),
        (1, 3000),
        (3000, 1),
        (14, 21),
        (333, 500),
        (500, 333),
        (719, 1280),
        (4000, 4001),
        (9000, 70),
    ]
    for h, w in sizes:
        expected = get_resize_output_image_size(np.empty((3, h, w), np.uint8), resolution_max_side=longest)
        assert fit_longest_edge(h, w, longest) == tuple(expected), (h, w)
        assert max(fit_longest_edge(h, w, longest)) <= MAX_IMAGE_SIZE


def test_undecodable_image_is_a_value_error(pair: Callable) -> None:
    ours, _ = pair("smolvlm2-256m")
    with pytest.raises(ValueError, match="cannot decode image"):
        ours([ChatMessage("user", [ImagePart(b"definitely not a png")])])


def test_checkpoint_resaved_by_transformers_loads_the_same(pair: Callable, tmp_path: Path) -> None:
    """transformers 5 saves processor_config.json with nested sub-processor dicts and chat_template.jinja."""
    ours, ref = pair("smolvlm2-256m")
    ref.save_pretrained(tmp_path)
    assert (
        not (tmp_path / "preprocessor_config.json").exists() and (tmp_path / "chat_template.jinja").exists()
    )
    resaved = SmolVLMProcessor.from_pretrained(tmp_path)
    assert (resaved.image_config, resaved.video_config) == (ours.image_config, ours.video_config)
    assert (resaved.image_seq_len, resaved.chat_template) == (ours.image_seq_len, ours.chat_template)
    messages = [ChatMessage("user", [TextPart("Hi "), ImagePart(IMAGES["tiny"]())])]
    assert ours(messages).input_ids.tolist() == resaved(messages).input_ids.tolist()
