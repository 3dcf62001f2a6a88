"""bf16 vision encoder with oneDNN's fused GEMM epilogues (GELU, residual add) stays as close to fp32 as the
unfused ops are; fp32 never takes the fused path (it must equal transformers exactly)."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from smolgate.engine.config import VisionConfig
from smolgate.engine.model import vision

CFG = VisionConfig(hidden_size=128, intermediate_size=512, num_layers=3, num_heads=4, image_size=64, patch_size=8)


@pytest.mark.skipif(not vision.fused_linear_available(), reason="this torch build has no oneDNN linear epilogues")
def test_fused_bf16_encoder_is_as_close_to_fp32_as_the_plain_ops(monkeypatch: pytest.MonkeyPatch) -> None:
    torch.manual_seed(0)
    model = vision.VisionModel(CFG).eval()
    pixels = torch.randn(2, 3, CFG.image_size, CFG.image_size)
    calls: list[str] = []
    real = torch.ops.mkldnn._linear_pointwise

    def spy(*args: object) -> torch.Tensor:
        calls.append(str(args[-1] if args[-1] != "tanh" else "gelu"))
        return real(*args)

    with torch.inference_mode():
        ref = model(pixels)  # fp32
        assert not calls
        bf16 = copy.deepcopy(model).to(torch.bfloat16)
        monkeypatch.setattr(torch.ops.mkldnn, "_linear_pointwise", spy)
        fused = bf16(pixels.to(torch.bfloat16)).float()
        assert calls.count("gelu") == CFG.num_layers and calls.count("add") == 2 * CFG.num_layers
        monkeypatch.setattr(vision, "fused_linear_available", lambda: False)
        plain = bf16(pixels.to(torch.bfloat16)).float()

    def cos(a: torch.Tensor) -> float:
        return F.cosine_similarity(a.flatten(1), ref.flatten(1), dim=-1).min().item()

    assert cos(fused) >= 0.999
    assert cos(fused) >= cos(plain) - 1e-4
