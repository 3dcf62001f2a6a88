"""The bf16 vision encoder's fast paths stay as close to fp32 as the plain ops are: oneDNN's fused GELU GEMM, the
residual as the GEMM's accumulator, one q/k/v GEMM, the sequence padded for flash attention, and quantized layers
feeding the same dense kernels. fp32 never takes them (it must equal transformers exactly)."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from numerics import assert_bf16_close

from smolgate.engine.config import VisionConfig
from smolgate.engine.kernels import encoder as kernels
from smolgate.engine.kernels.fuse import fuse_projections
from smolgate.engine.model import vision
from smolgate.engine.quant import quantize_model

# 7 x 7 = 49 patches: not a multiple of ATTN_ALIGN, so bf16 runs pad the sequence
CFG = VisionConfig(
    hidden_size=128, intermediate_size=512, num_layers=3, num_heads=4, image_size=56, patch_size=8
)


def _model(*, fast: bool = True) -> vision.VisionModel:
    """The reference encoder, with the engine's load-time encoder swaps (kernels/encoder.py) unless not `fast`."""
    torch.manual_seed(0)
    model = vision.VisionModel(CFG).eval()
    if fast:
        kernels.speed_up_encoder(model)
    return model


def fuse_vision_qkv(model: vision.VisionModel) -> None:
    """One q/k/v GEMM per layer and the fused encoder layers, as the engine loads the encoder (kernels/)."""
    assert fuse_projections(model) == len(model.encoder.layers)
    kernels.speed_up_encoder(model)


def cos_min(a: torch.Tensor, b: torch.Tensor) -> float:
    """The lowest cosine similarity between matching rows of a and b (flattened past the first dimension)."""
    return F.cosine_similarity(a.float().flatten(1), b.float().flatten(1), dim=-1).min().item()


def _pixels() -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(1)
    pixels = torch.randn(2, 3, CFG.image_size, CFG.image_size)
    side = CFG.patches_per_side
    mask = torch.ones(2, side, side, dtype=torch.bool)
    mask[1, :, 5:] = False  # the second tile is a partial one (padded patches on the right)
    return pixels, mask


@pytest.mark.skipif(
    not kernels.fused_linear_available(),
    reason="no oneDNN bf16 linear epilogues in this torch build or on this CPU (AVX2)",
)
def test_fast_bf16_encoder_is_as_close_to_fp32_as_the_plain_ops(monkeypatch: pytest.MonkeyPatch) -> None:
    model = _model(fast=False)
    pixels, mask = _pixels()
    calls: list[str] = []
    real = torch.ops.mkldnn._linear_pointwise

    def spy(*args: object) -> torch.Tensor:
        calls.append(str(args[3]))
        return real(*args)

    with torch.inference_mode():
        ref = model(pixels, mask)  # fp32
        assert not calls
        fast = copy.deepcopy(model).to(torch.bfloat16)
        fuse_vision_qkv(fast)
        monkeypatch.setattr(torch.ops.mkldnn, "_linear_pointwise", spy)
        out = fast(pixels.to(torch.bfloat16), mask)
        assert calls == ["gelu"] * CFG.num_layers
        monkeypatch.setattr(kernels, "fused_linear_available", lambda: False)
        monkeypatch.setattr(kernels, "ATTN_ALIGN", 1)
        plain = model.to(torch.bfloat16)(pixels.to(torch.bfloat16), mask)

    assert out.shape == ref.shape == (2, CFG.num_patches, CFG.hidden_size)
    valid = mask.flatten(1)  # a partial tile's padded patches are ignored downstream
    assert cos_min(out[0], ref[0]) >= 0.999 and cos_min(out[1][valid[1]], ref[1][valid[1]]) >= 0.999
    assert cos_min(out[0], ref[0]) >= cos_min(plain[0], ref[0]) - 1e-4


def test_padding_the_sequence_does_not_change_the_valid_outputs(monkeypatch: pytest.MonkeyPatch) -> None:
    model = _model().to(torch.bfloat16)
    pixels, mask = _pixels()
    with torch.inference_mode():
        padded = model(pixels.to(torch.bfloat16), mask).float()
        monkeypatch.setattr(kernels, "ATTN_ALIGN", 1)
        unpadded = model(pixels.to(torch.bfloat16), mask).float()
    valid = mask.flatten(1)
    for i in range(2):
        torch.testing.assert_close(padded[i][valid[i]], unpadded[i][valid[i]], atol=0.05, rtol=0.02)


def test_fused_qkv_gives_the_same_outputs() -> None:
    """Each output column is its own sum, but the wider GEMM may be another oneDNN kernel adding in another order:
    the same values to bf16 rounding (bit-identical where the kernel is the same, as with AMX and AVX-512 bf16)."""
    model = _model().to(torch.bfloat16)
    fused = copy.deepcopy(model)
    fuse_vision_qkv(fused)
    pixels, _ = _pixels()
    plain, joint = model.encoder.layers[0].self_attn, fused.encoder.layers[0].self_attn
    assert joint.qkv_proj is not None
    x = torch.randn(2, CFG.num_patches, CFG.hidden_size, dtype=torch.bfloat16)
    with torch.inference_mode():
        assert_bf16_close(
            joint.qkv_proj(x), torch.cat([plain.q_proj(x), plain.k_proj(x), plain.v_proj(x)], -1)
        )
        out, ref = fused(pixels.to(torch.bfloat16)), model(pixels.to(torch.bfloat16))
    assert cos_min(out, ref) >= 0.9999  # an ulp here and there, through three layers


@pytest.mark.parametrize("mode", ["int8", "int4"])
def test_weight_only_layers_feed_the_dense_kernels_with_their_own_values(mode: str) -> None:
    """At many rows a weight-only layer hands its dequantized weight to the fused kernels: the encoder then equals
    a bf16 encoder holding those dequantized weights."""
    quant = quantize_model(_model().to(torch.bfloat16), mode)  # type: ignore[arg-type]
    dense = _model().to(torch.bfloat16)
    for name, layer in quant.named_modules():
        if hasattr(layer, "dequantized"):
            dense.get_submodule(name).weight.data = layer.dequantized()
    torch.manual_seed(2)
    seq = CFG.num_patches  # rows per tile
    tiles = -(
        -max(m.dense_from for m in quant.modules() if hasattr(m, "dense_from")) // seq
    )  # the dense path
    pixels = torch.randn(tiles, 3, CFG.image_size, CFG.image_size)
    layer = quant.encoder.layers[0].mlp.fc1
    assert layer.dense_weight(tiles * seq) is not None and layer.dense_weight(1) is None
    with torch.inference_mode():
        out = quant(pixels.to(torch.bfloat16)).float()
        ref = dense(pixels.to(torch.bfloat16)).float()
    assert cos_min(out, ref) >= 0.9999
