"""The vision encoder's bf16 fast paths, swapped in at load: each encoder layer becomes a `FusedEncoderLayer`
(GELU fused into fc1's oneDNN GEMM, residuals as the accumulator of out_proj's and fc2's GEMMs, row-split where
oneDNN would leave a core idle) and the encoder an `AlignedEncoder` (sequence padded for flash attention).

fp32 never takes these paths (it must equal the reference exactly): every helper falls back to the plain ops.
Figures: docs/performance.md, "Vision encoder".
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import nn

from ..model import vision
from ..quant import QuantLinear
from . import rowsplit

# bf16 sequences are padded to a multiple of this (padded keys masked): CPU flash attention runs odd lengths slower
ATTN_ALIGN = 16


@functools.cache
def fused_linear_available() -> bool:
    """Whether oneDNN's bf16 linear with a fused epilogue (GELU) runs here: x86 builds of torch, on a CPU with
    AVX-512 (with AVX2 only, or ONEDNN_MAX_CPU_ISA=AVX2, torch refuses bf16 oneDNN ops and the plain ops run)."""
    try:
        x, w = torch.ones(2, 8, dtype=torch.bfloat16), torch.ones(4, 8, dtype=torch.bfloat16)
        gelu = torch.ops.mkldnn._linear_pointwise(x, w, None, "gelu", [], "tanh")
        return bool(gelu.shape == (2, 4))
    except (RuntimeError, AttributeError, NotImplementedError):
        return False


def dense_weight(linear: nn.Module, x: torch.Tensor) -> torch.Tensor | None:
    """The bf16 [N, K] weight to run `linear` on x [..., K] with the fused bf16 kernels below, or None to call the
    layer itself: fp32 keeps the reference's exact ops, and a quantized layer decides by its kernels (at many rows
    a weight-only layer dequantizes anyway; a W8A8 layer never does)."""
    if x.dtype != torch.bfloat16:
        return None
    if type(linear) is nn.Linear:
        return linear.weight
    if isinstance(linear, QuantLinear):
        return linear.dense_weight(x.numel() // x.shape[-1])
    return None


def gelu_tanh(x: torch.Tensor) -> torch.Tensor:
    """GELU, tanh approximation. Compiled, as x * sigmoid(2z), the same function (0.5 * (1 + tanh z) =
    sigmoid(2z)): inductor vectorizes sigmoid far better than tanh."""
    if torch.compiler.is_compiling():
        xf = x.float()
        return (xf * torch.sigmoid(1.5957691216057308 * (xf + 0.044715 * xf * xf * xf))).to(x.dtype)
    return F.gelu(x, approximate="tanh")


def linear_gelu(linear: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """gelu_tanh(linear(x)), the GELU fused into oneDNN's GEMM where it can be. Compiled, inductor fuses it with
    the bias instead (it cannot lower this oneDNN op on a runtime weight)."""
    fusable = not torch.compiler.is_compiling() and fused_linear_available()
    if fusable and (w := dense_weight(linear, x)) is not None:
        out: torch.Tensor = torch.ops.mkldnn._linear_pointwise(x, w, linear.bias, "gelu", [], "tanh")
        return out
    return gelu_tanh(linear(x))


def linear_add(linear: nn.Module, x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
    """residual + linear(x); in bf16 the residual is the GEMM's accumulator input (one pass less; faster than
    oneDNN's fused add, which reorders the weight on every call)."""
    if (w := dense_weight(linear, x)) is None:
        y: torch.Tensor = linear(x)
        return residual + y
    out = rowsplit.addmm(residual.reshape(-1, w.shape[0]), x.reshape(-1, w.shape[1]), w)
    if isinstance(bias := linear.bias, torch.Tensor):
        out += bias
    return out.view(residual.shape)


class FusedEncoderLayer(vision.EncoderLayer):
    """An encoder layer whose GEMMs take their epilogues: fc1 + GELU, out_proj + residual, fc2 + residual."""

    def __init__(self, layer: vision.EncoderLayer) -> None:
        nn.Module.__init__(self)
        self.layer_norm1, self.self_attn = layer.layer_norm1, layer.self_attn
        self.layer_norm2, self.mlp = layer.layer_norm2, layer.mlp

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        attn, mlp = self.self_attn, self.mlp
        x = linear_add(attn.out_proj, attn.attend(self.layer_norm1(x), mask), x)
        return linear_add(mlp.fc2, linear_gelu(mlp.fc1, self.layer_norm2(x)), x)


class AlignedEncoder(vision.Encoder):
    """The encoder with bf16 sequences padded to a multiple of ATTN_ALIGN (padded keys masked, outputs dropped)."""

    def __init__(self, encoder: vision.Encoder) -> None:
        nn.Module.__init__(self)
        self.layers = encoder.layers

    def forward(
        self, x: torch.Tensor, keys: torch.Tensor | None, run_layer: vision.LayerRunner = vision.run_layer
    ) -> torch.Tensor:
        b, n, _ = x.shape
        if (pad := -n % ATTN_ALIGN) and x.dtype == torch.bfloat16:  # fp32 keeps the reference's exact shapes
            x = F.pad(x, (0, 0, 0, pad))
            keys = F.pad(torch.ones(b, n, dtype=torch.bool) if keys is None else keys, (0, pad), value=False)
        return super().forward(x, keys, run_layer)[:, :n]


def speed_up_encoder(model: vision.VisionModel) -> None:
    """Swap in the fused layers and the aligned encoder, in place (the same weights, no copy)."""
    layers = model.encoder.layers
    for i, layer in enumerate(layers):
        if not isinstance(layer, FusedEncoderLayer):
            layers[i] = FusedEncoderLayer(layer)  # type: ignore[arg-type]  # (a ModuleList of EncoderLayer)
    if not isinstance(model.encoder, AlignedEncoder):
        model.encoder = AlignedEncoder(model.encoder)
