"""Fuse sibling projections once a model is loaded: q/k/v into `qkv_proj` (text decoder and vision encoder),
gate/up into `gate_up_proj`.

One GEMM per group instead of three (or two): a decode step of a small model is bound by per-call cost (SmolLM2-135M
makes 210 projection calls per token, ~20 us each whatever the width), and wider outputs keep the kernels busier.
Works for dense, int8 and int4 layers alike, since all our kernels compute each output column on its own (int4 groups
run along K, int8 scales are per output channel): concatenating weights along N concatenates the outputs. Only the
loaded model is fused; checkpoints, state dicts and the module names tests compare against stay per-projection.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .model import vision
from .model.linear import Linear
from .model.smolvlm import SmolVLM
from .model.text import MLP, Attention
from .quant import PackedInt4, PackedInt8, QuantLinear


def concat_linears(layers: Sequence[nn.Module]) -> nn.Module | None:
    """Layers with the same input (same kind, same quantization) -> one layer whose output is theirs side by side;
    None when they cannot be fused (mixed kinds, e.g. an int4 layer next to an int8 one)."""
    biases: list[torch.Tensor | None] = [getattr(m, "bias", None) for m in layers]
    present = [b.detach() for b in biases if b is not None]
    if 0 < len(present) < len(biases):
        return None
    bias = torch.cat(present) if present else None
    kind = type(layers[0])
    if kind in (nn.Linear, Linear) and all(
        type(m) is kind for m in layers
    ):  # the text decoder's or the encoder's
        weight = torch.cat([m.weight.detach() for m in layers if isinstance(m, nn.Linear)])
        fused = kind(weight.shape[1], weight.shape[0], bias=bias is not None, device="meta")
        fused.weight = nn.Parameter(weight, requires_grad=False)
        if bias is not None:
            fused.bias = nn.Parameter(bias, requires_grad=False)
        return fused
    if not all(isinstance(m, QuantLinear) for m in layers):
        return None
    quant = [m for m in layers if isinstance(m, QuantLinear)]
    first = quant[0]
    if any(m.group_size != first.group_size or m.in_features != first.in_features for m in quant):
        return None
    if first.group_size:
        packed: PackedInt4 | PackedInt8 = PackedInt4(
            torch.cat([m.weight for m in quant]),
            torch.cat([m.scales for m in quant], dim=1),
            first.group_size,
        )
    else:
        packed = PackedInt8(torch.cat([m.int8_weight() for m in quant]), torch.cat([m.scales for m in quant]))
    return QuantLinear(packed, bias, first.in_features, dynamic=any(m.dynamic for m in quant))


def fuse_projections(model: SmolVLM) -> int:
    """Fuse every decoder layer's q/k/v and gate/up projections, and every vision layer's q/k/v, in place -> how
    many groups were fused."""
    fused = 0
    for module in model.modules():
        if isinstance(module, (Attention, vision.Attention)) and module.qkv_proj is None:
            layer = concat_linears([module.q_proj, module.k_proj, module.v_proj])
            if layer is not None:
                module.fuse_qkv(layer)
                fused += 1
        elif isinstance(module, MLP) and module.gate_up_proj is None:
            layer = concat_linears([module.gate_proj, module.up_proj])
            if layer is not None:
                module.fuse_gate_up(layer)
                fused += 1
    return fused
