"""Our model against transformers' SmolVLM / Idefics3 / Llama on the same tiny random checkpoints (fp32).

Inputs come from our processor (the same ids and pixels go to both models); logits must agree to 1e-4 and
greedy decoding must pick exactly the tokens `generate(do_sample=False)` picks.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
import torch
from checkpoints import VLM_VARIANTS, make_checkpoint
from numerics import FP32_TIE, assert_decisive
from PIL import Image

from smolgate.engine.engine import ChatMessage, Engine, GenerationParams, ImagePart, TextPart, VideoPart

TOL = 1e-4
assert FP32_TIE >= 2 * TOL  # greedy steps decisive at FP32_TIE cannot flip between logits within TOL
Pair = tuple[Engine, Any]


def picture(width: int, height: int, seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    img = np.stack([x * 255 / width, y * 255 / height, 128 + 100 * np.sin(x / 5.0)], -1) + rng.normal(
        0, 20, (height, width, 3)
    )
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))


def mp4(frames: int = 10, fps: int = 4) -> bytes:
    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.width, stream.height, stream.pix_fmt = 80, 48, "yuv420p"
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(np.asarray(picture(80, 48, seed=i)), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return buf.getvalue()


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Pair]:
    cache: dict[str, Pair] = {}

    def get(variant: str) -> Pair:
        if variant not in cache:
            path, ref = make_checkpoint(variant, tmp_path_factory.mktemp(variant))
            cache[variant] = (Engine.load(str(path)), ref)
        return cache[variant]

    torch.set_num_threads(2)
    return get


def our_logits(engine: Engine, ids: torch.Tensor, pixels: torch.Tensor | None) -> torch.Tensor:
    with torch.inference_mode():
        model = engine.model
        return model(model.embed(ids, pixels), 0, last_only=False)[0]


def ref_logits(ref: Any, ids: torch.Tensor, pixels: torch.Tensor | None) -> torch.Tensor:
    kwargs = (
        {} if pixels is None else {"pixel_values": pixels[None]}
    )  # reference wants [batch, images, 3, H, W]
    with torch.inference_mode():
        return ref(input_ids=ids, **kwargs).logits[0]


def user(*parts: Any) -> list[ChatMessage]:
    return [ChatMessage("user", list(parts))]


CONVERSATIONS: dict[str, Callable[[], list[ChatMessage]]] = {
    "text": lambda: [
        ChatMessage("system", [TextPart("Be brief.")]),
        ChatMessage("user", [TextPart("Hello! What is 2+2? 日本語 and emoji 🙂")]),
        ChatMessage("assistant", [TextPart("4.")]),
        ChatMessage("user", [TextPart("And 3+3?")]),
    ],
    "image": lambda: user(ImagePart(picture(120, 90, 1)), TextPart("Describe this image.")),
    "multi_image": lambda: user(
        TextPart("Compare"), ImagePart(picture(50, 140, 2)), TextPart("with"), ImagePart(picture(200, 200, 3))
    ),
    "video": lambda: user(VideoPart(mp4()), TextPart("What happens?")),
}
CASES = [("smollm2-text", "text")] + [
    (v, c)
    for v in VLM_VARIANTS
    for c in ("text", "image", "multi_image", "video")
    if not (v == "smolvlm-v1" and c == "video")
]


@pytest.mark.parametrize(("variant", "conversation"), CASES)
def test_logits_match_reference(pair: Callable[[str], Pair], variant: str, conversation: str) -> None:
    engine, ref = pair(variant)
    ids, pixels = engine._prepare(CONVERSATIONS[conversation]())
    if conversation != "text":
        assert pixels is not None and int((ids == engine.model.cfg.image_token_id).sum()) > 0
    ours, theirs = our_logits(engine, ids, pixels), ref_logits(ref, ids, pixels)
    assert ours.shape == theirs.shape == (ids.shape[1], engine.model.cfg.text.vocab_size)
    assert (ours - theirs).abs().max().item() <= TOL
    if pixels is not None:  # the images really flow into the logits (so the comparison above can fail)
        shifted = our_logits(engine, ids, pixels.flip(-1))
        assert (shifted[-1] - ours[-1]).abs().max().item() > 1e-3


GREEDY_CASES = [
    ("smollm2-text", "text"),
    ("smolvlm2-256m", "image"),
    ("smolvlm2-256m", "video"),
    ("smolvlm2-2.2b", "multi_image"),
    ("smolvlm-v1", "multi_image"),  # (its "image" answer has a near-tie, see assert_decisive)
]


@pytest.mark.parametrize(("variant", "conversation"), GREEDY_CASES)
def test_greedy_tokens_match_reference_generate(
    pair: Callable[[str], Pair], variant: str, conversation: str
) -> None:
    engine, ref = pair(variant)
    messages = CONVERSATIONS[conversation]()
    ids, pixels = engine._prepare(messages)
    kwargs = {} if pixels is None else {"pixel_values": pixels[None]}
    with torch.inference_mode():
        out = ref.generate(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            do_sample=False,
            max_new_tokens=32,
            output_logits=True,
            return_dict_in_generate=True,
            **kwargs,
        )
    expected = out.sequences[0, ids.shape[1] :].tolist()
    # our logits are within TOL of theirs, so equal picks need every step's winner to lead by more than 2 x TOL
    assert_decisive(torch.cat(out.logits), expected)
    result = engine.generate(messages, GenerationParams(max_tokens=32))
    assert result.token_ids == expected
    assert len(set(expected)) > 1  # a degenerate one-token loop would prove little
    assert result.prompt_tokens == ids.shape[1] and result.completion_tokens == len(expected)


def test_partial_tiles_use_the_reference_navit_positions(pair: Callable[[str], Pair]) -> None:
    """A pixel mask with padding exercises the bucketed position ids and the key-padding attention mask."""
    engine, ref = pair("smolvlm2-256m")
    size = engine.model.cfg.vision.image_size  # type: ignore[union-attr]
    torch.manual_seed(0)
    pixels = torch.randn(2, 3, size, size)
    mask = torch.ones(2, size, size, dtype=torch.bool)
    mask[0, :, 40:] = False  # 5 of 8 patch columns valid
    mask[1, 24:, :] = False  # 3 of 8 patch rows valid
    pixels = pixels * mask[:, None]
    with torch.inference_mode():
        ours = engine.model.encode_images(pixels, mask)
        theirs = ref.model.get_image_features(pixels[None], mask[None]).pooler_output
        full = engine.model.encode_images(pixels)
    theirs = torch.stack(list(theirs)).reshape(ours.shape)
    assert (ours - theirs).abs().max().item() <= TOL
    assert (ours - full).abs().max().item() > 1e-3  # the mask matters


def test_v1_checkpoint_is_idefics3(pair: Callable[[str], Pair]) -> None:
    engine, ref = pair("smolvlm-v1")
    assert type(ref).__name__ == "Idefics3ForConditionalGeneration"
    assert engine.model.cfg.model_type == "idefics3" and engine.supports_images and not engine.supports_video


def test_published_config_gaps_are_filled_from_weights(pair: Callable[[str], Pair], tmp_path: Path) -> None:
    engine, ref = pair("smolvlm2-256m")  # its config.json has no vision intermediate_size / num_hidden_layers
    vision = engine.model.cfg.vision
    assert vision is not None
    assert (vision.intermediate_size, vision.num_layers) == (
        ref.config.vision_config.intermediate_size,
        ref.config.vision_config.num_hidden_layers,
    )


def test_chunked_prefill_matches_one_pass(pair: Callable[[str], Pair]) -> None:
    """Chunks cut through the image token runs; the KV cache and masks must make that invisible."""
    from oracle import new_caches, prefill

    engine, ref = pair("smolvlm2-2.2b")
    ids, pixels = engine._prepare(CONVERSATIONS["multi_image"]())
    caches = new_caches(engine.model, ids.shape[1])
    one_pass = prefill(engine.model, caches, ids, pixels, chunk=10_000)
    chunked = prefill(engine.model, caches, ids, pixels, chunk=7)
    assert one_pass is not None and chunked is not None
    assert (chunked - one_pass).abs().max().item() <= TOL
    assert (chunked - ref_logits(ref, ids, pixels)[-1]).abs().max().item() <= TOL


def test_bfloat16_engine_tracks_float32(pair: Callable[[str], Pair], tmp_path: Path) -> None:
    engine, _ = pair("smolvlm2-256m")
    path, _ = make_checkpoint("smolvlm2-256m", tmp_path)  # same seed, same weights
    half = Engine.load(str(path), dtype="bfloat16")
    ids, pixels = engine._prepare(CONVERSATIONS["image"]())
    ours, theirs = our_logits(half, ids, pixels).float()[-1], our_logits(engine, ids, pixels)[-1]
    assert torch.corrcoef(torch.stack([ours, theirs]))[0, 1] > 0.99
