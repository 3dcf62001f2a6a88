"""Compiled vision encoder (int8-dynamic + Limits.compile): the features eager gives, graphs compiled only at load."""

from __future__ import annotations

import io
from types import SimpleNamespace
from typing import Any

import torch
from checkpoints import make_checkpoint
from PIL import Image
from test_compiled import compiled_graphs
from test_vision_fused import cos_min, fuse_vision_qkv

from smolgate.engine import onednn, quant
from smolgate.engine.compiled import compile_vision, warm_up_vision
from smolgate.engine.config import VisionConfig
from smolgate.engine.engine import ChatMessage, Engine, GenerationParams, ImagePart, TextPart
from smolgate.engine.kernels.encoder import speed_up_encoder
from smolgate.engine.model.vision import VisionModel, run_layer
from smolgate.engine.scheduler import Limits

# wide enough that q/k/v (384 outputs) and fc1 (512) run oneDNN's W8A8 GEMM; 7 x 7 patches get padded to 64
CFG = VisionConfig(
    hidden_size=128, intermediate_size=512, num_layers=3, num_heads=4, image_size=56, patch_size=8
)


def _dynamic(module: torch.nn.Module) -> bool:
    return any(isinstance(m, quant.QuantLinear) and m.dynamic for m in module.modules())


def test_compiled_w8a8_encoder_gives_the_eager_features_and_compiles_only_at_warm_up() -> None:
    torch.manual_seed(0)
    encoder = quant.quantize_model(VisionModel(CFG).to(torch.bfloat16).eval(), "int8-dynamic")
    speed_up_encoder(encoder)  # the encoder layers the engine loads (kernels/encoder.py)
    model: Any = SimpleNamespace(vision=encoder, dtype=torch.bfloat16)
    pixels = torch.randn(3, 3, CFG.image_size, CFG.image_size, dtype=torch.bfloat16)
    mask = torch.ones(3, CFG.patches_per_side, CFG.patches_per_side, dtype=torch.bool)
    mask[2, 4:, :] = False  # the third tile is partial
    with torch.inference_mode():
        eager = encoder(pixels, mask)
        assert compile_vision(model)
        warm_up_vision(model)
        warmed = compiled_graphs()
        compiled = encoder(pixels, mask)
        compiled_full = encoder(pixels[:2])
    assert compiled_graphs() == warmed  # three tiles, full and partial, in graphs compiled at warm-up
    valid = mask.flatten(1)
    for i in range(3):
        assert cos_min(compiled[i][valid[i]], eager[i][valid[i]]) >= 0.999
    torch.testing.assert_close(compiled_full, compiled[:2], rtol=0, atol=0)  # tiles run one by one either way
    if onednn.onednn_int8_available():
        assert encoder.encoder.layers[0].mlp.fc1._onednn is not None


def test_other_modes_keep_the_eager_encoder() -> None:
    encoder = quant.quantize_model(VisionModel(CFG).to(torch.bfloat16).eval(), "int8")
    assert not compile_vision(SimpleNamespace(vision=encoder, dtype=torch.bfloat16))  # type: ignore[arg-type]


def _png() -> bytes:
    buf = io.BytesIO()
    img = Image.new("RGB", (90, 70), (200, 20, 20))
    img.putpixel((3, 3), (0, 0, 0))
    img.save(buf, "PNG")
    return buf.getvalue()


def test_int8_dynamic_vlm_engine_compiles_its_encoder_at_load(tmp_path) -> None:
    path, _ = make_checkpoint("smolvlm2-2.2b", tmp_path / "vlm")
    eager = Engine.load(str(path), dtype="bfloat16", quant="int8-dynamic")
    compiled = Engine.load(str(path), dtype="bfloat16", quant="int8-dynamic", limits=Limits(compile=True))
    assert compiled.model.vision is not None and compiled.model.vision.run_layer is not run_layer
    assert eager.model.vision is not None and eager.model.vision.run_layer is run_layer
    # eager, the encoder is weight-only int8 (W8A8 pays off only compiled); the decoder is W8A8 either way
    assert _dynamic(compiled.model.vision) and not _dynamic(eager.model.vision)
    assert _dynamic(eager.model.text) and _dynamic(compiled.model.text)
    serving = compiled_graphs()
    message = [ChatMessage("user", [ImagePart(_png()), TextPart("Describe it.")])]
    answer = compiled.generate(message, GenerationParams(max_tokens=4))
    assert answer.prompt_tokens > 100 and compiled.model.feature_cache.encoded > 1  # tiles went through it
    assert compiled_graphs() == serving  # the request paid for no compile
    cfg = compiled.model.cfg.vision
    assert cfg is not None
    pixels = torch.randn(2, 3, cfg.image_size, cfg.image_size)
    got = compiled.run(lambda: compiled.model.vision(pixels.to(compiled.model.dtype)))
    ref = eager.run(lambda: eager.model.vision(pixels.to(eager.model.dtype)))
    assert cos_min(got, ref) >= 0.999
    eager.close()
    compiled.close()


def test_fp32_encoder_with_weight_only_layers_compiles() -> None:
    """Narrow layers fall back to the weight-only int8 kernel, which needs row-major input; compiled in fp32, the
    bf16 cast before it once got a column-major buffer and the first call failed."""
    cfg = VisionConfig(
        hidden_size=48, intermediate_size=96, num_layers=2, num_heads=4, image_size=66, patch_size=7
    )
    torch.manual_seed(0)
    encoder = quant.quantize_model(VisionModel(cfg).eval(), "int8-dynamic")
    fuse_vision_qkv(encoder)  # as the engine loads it
    model: Any = SimpleNamespace(vision=encoder, dtype=torch.float32)
    pixels = torch.randn(2, 3, cfg.image_size, cfg.image_size)
    with torch.inference_mode():
        eager = encoder(pixels)
        assert compile_vision(model)
        warm_up_vision(model)
        assert cos_min(encoder(pixels), eager) >= 0.999
