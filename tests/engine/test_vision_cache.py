"""A follow-up question on the same image skips the vision encoder and gives the same answer."""

from __future__ import annotations

import io

from checkpoints import make_checkpoint
from PIL import Image

from smolgate.engine.engine import ChatMessage, Engine, GenerationParams, ImagePart, TextPart


def _png(color: tuple[int, int, int], size: tuple[int, int] = (90, 70)) -> bytes:
    buf = io.BytesIO()
    img = Image.new("RGB", size, color)
    img.putpixel((3, 3), (0, 0, 0))
    img.save(buf, "PNG")
    return buf.getvalue()


def test_second_request_on_the_same_image_skips_the_encoder(tmp_path):
    path, _ = make_checkpoint("smolvlm2-256m", tmp_path / "tiny")
    engine = Engine.load(str(path))
    cache = engine.model.feature_cache
    params = GenerationParams(max_tokens=12)

    def ask(image: bytes, question: str) -> str:
        return engine.generate([ChatMessage("user", [ImagePart(image), TextPart(question)])], params).text

    first = ask(_png((200, 20, 20)), "Describe it.")
    encoded_once = cache.encoded
    assert encoded_once > 1  # the image was split into tiles plus the global view
    second = ask(_png((200, 20, 20)), "Describe it.")
    assert cache.encoded == encoded_once  # nothing new went through the encoder
    assert cache.hits >= encoded_once
    assert second == first  # identical output from the cached features
    ask(_png((20, 200, 20)), "Describe it.")  # a different image is encoded
    assert cache.encoded > encoded_once
    engine.close()


def test_mixed_cached_and_new_tiles_keep_token_order(tmp_path):
    import torch

    from smolgate.engine.vision_cache import FeatureCache

    path, _ = make_checkpoint("smolvlm2-256m", tmp_path / "tiny")
    engine = Engine.load(str(path))
    model = engine.model
    size = model.cfg.vision.image_size
    a, b, c = (torch.randn(1, 3, size, size) for _ in range(3))
    with torch.inference_mode():
        model.encode_images(torch.cat([a, b]))  # A and B are now cached
        mixed = model.encode_images(torch.cat([b, c, a]))  # cached, new, cached
        model.feature_cache = FeatureCache()
        fresh = model.encode_images(torch.cat([b, c, a]))
    assert torch.allclose(mixed, fresh, atol=1e-6)
    engine.close()
