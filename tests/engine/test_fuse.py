"""Fused projections (engine.kernels.fuse): one q/k/v GEMM and one gate/up GEMM per layer give the same logits."""

from __future__ import annotations

import copy

import pytest
import torch
from test_quant import POSITIONS, logits_all, sample_language, trained
from torch import nn

from smolgate.engine import quant
from smolgate.engine.kernels.fuse import concat_linears, fuse_projections


@pytest.mark.parametrize("mode", ["none", "int8", "int8-dynamic", "int4"])
def test_fused_model_gives_the_same_logits(mode: quant.QuantMode) -> None:
    model = quant.quantize_model(copy.deepcopy(trained()), mode)
    fused = quant.quantize_model(
        copy.deepcopy(trained()), mode
    )  # (a oneDNN-packed model cannot be deep-copied)
    vision_layers = model.cfg.vision.num_layers if model.cfg.vision is not None else 0
    assert fuse_projections(fused) == 2 * model.cfg.text.num_layers + vision_layers
    attn, mlp = fused.text.layers[0].self_attn, fused.text.layers[0].mlp
    assert attn.qkv_proj is not None and not hasattr(attn, "q_proj")
    assert mlp.gate_up_proj is not None and not hasattr(mlp, "gate_proj")
    tokens = sample_language(1, POSITIONS // 4, seed=7)
    with torch.no_grad():
        ref = logits_all(model, tokens, step_by_step=True)
        got = logits_all(fused, tokens, step_by_step=True)
        ref_prefill = logits_all(model, tokens, step_by_step=False)
        got_prefill = logits_all(fused, tokens, step_by_step=False)
    # every kernel computes each output column by itself, but a wider GEMM may be another kernel (chosen by shape
    # and CPU) that adds in another order: the same logits to the rounding of the layers' compute dtype (fp32, or
    # bf16 activations in the quantized kernels, where an ulp here and there moves logits by < 2**-8 of their
    # scale). A wrong split (q for k, gate for up) moves them by their whole scale.
    rel = 1e-5 if mode == "none" else 2.0**-6
    for fused_logits, plain_logits in ((got, ref), (got_prefill, ref_prefill)):
        scale = plain_logits.abs().max().item()
        torch.testing.assert_close(fused_logits, plain_logits, rtol=0, atol=rel * scale)


def test_mixed_kinds_are_left_alone() -> None:
    dense = nn.Linear(64, 64, bias=False)
    int4 = quant.QuantLinear(quant.quantize_linear_weight(torch.randn(64, 64), "int4"), None, 64)
    int8 = quant.QuantLinear(quant.quantize_linear_weight(torch.randn(64, 64), "int8"), None, 64)
    assert concat_linears([dense, int4]) is None
    assert concat_linears([int4, int8]) is None
    with_bias = nn.Linear(64, 64)
    assert concat_linears([dense, with_bias]) is None
    both = concat_linears([with_bias, nn.Linear(64, 32)])
    assert isinstance(both, nn.Linear) and both.weight.shape == (96, 64) and both.bias is not None
    x = torch.randn(3, 64)
    torch.testing.assert_close(both(x)[:, :64], with_bias(x))
