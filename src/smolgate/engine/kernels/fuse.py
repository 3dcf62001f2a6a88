"""Fuse sibling projections in a loaded model: q/k/v into `qkv_proj` (text decoder and vision encoder), gate/up
into `gate_up_proj`, by swapping each attention / MLP module for a subclass that projects with one GEMM.

A small model's decode step is bound by per-call cost, and wider outputs keep the kernels busier (figures:
docs/performance.md, "Fused projections"). Works for dense, int8 and int4 layers alike: every kernel computes each
output column on its own (int4 groups run along K, int8 scales are per output channel), so concatenating weights
along N concatenates the outputs. Checkpoints, state dicts and the reference modules stay per-projection.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..model import text, vision
from ..quant import PackedInt4, PackedInt8, QuantLinear
from .gemv import GemvLinear


def concat_linears(layers: Sequence[nn.Module]) -> nn.Module | None:
    """Layers with the same input (same kind, same quantization) -> one layer whose output is theirs side by side;
    None when they cannot be fused (mixed kinds, e.g. an int4 layer next to an int8 one)."""
    biases: list[torch.Tensor | None] = [getattr(m, "bias", None) for m in layers]
    present = [b.detach() for b in biases if b is not None]
    if 0 < len(present) < len(biases):
        return None
    bias = torch.cat(present) if present else None
    kind = type(layers[0])
    if kind in (nn.Linear, GemvLinear) and all(type(m) is kind for m in layers):
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


class FusedQKV(text.Attention):
    """The decoder's attention with q/k/v as one GEMM."""

    def __init__(self, attn: text.Attention, qkv: nn.Module) -> None:
        nn.Module.__init__(self)
        self.n_heads, self.n_kv, self.head_dim = attn.n_heads, attn.n_kv, attn.head_dim
        self.o_proj = attn.o_proj
        self.qkv_proj = qkv
        self.sizes = (self.n_heads * self.head_dim, *(2 * [self.n_kv * self.head_dim]))

    def project(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        q, k, v = self.qkv_proj(x).split(self.sizes, dim=-1)
        return q, k, v


class FusedGateUp(text.MLP):
    """The decoder's MLP with gate/up as one GEMM (output [gate | up])."""

    def __init__(self, mlp: text.MLP, gate_up: nn.Module) -> None:
        nn.Module.__init__(self)
        self.down_proj = mlp.down_proj
        self.gate_up_proj = gate_up

    def gate_up(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        gate, up = self.gate_up_proj(x).chunk(2, dim=-1)
        return gate, up


class FusedVisionQKV(vision.Attention):
    """The encoder's attention with q/k/v as one GEMM."""

    def __init__(self, attn: vision.Attention, qkv: nn.Module) -> None:
        nn.Module.__init__(self)
        self.n_heads, self.head_dim = attn.n_heads, attn.head_dim
        self.out_proj = attn.out_proj
        self.qkv_proj = qkv

    def project(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        b, n, _ = x.shape
        q, k, v = self.qkv_proj(x).view(b, n, 3, self.n_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        return q, k, v


def _fused(module: nn.Module) -> nn.Module | None:
    """The fused replacement for one reference module, or None (not fusable, or fused already)."""
    if isinstance(module, (FusedQKV, FusedGateUp, FusedVisionQKV)):
        return None
    if isinstance(module, text.Attention):
        qkv = concat_linears([module.q_proj, module.k_proj, module.v_proj])
        return FusedQKV(module, qkv) if qkv is not None else None
    if isinstance(module, vision.Attention):
        qkv = concat_linears([module.q_proj, module.k_proj, module.v_proj])
        return FusedVisionQKV(module, qkv) if qkv is not None else None
    if isinstance(module, text.MLP):
        gate_up = concat_linears([module.gate_proj, module.up_proj])
        return FusedGateUp(module, gate_up) if gate_up is not None else None
    return None


def fuse_projections(model: nn.Module) -> int:
    """Fuse every decoder layer's q/k/v and gate/up projections, and every vision layer's q/k/v, in place -> how
    many groups were fused."""
    kinds = (text.Attention, vision.Attention, text.MLP)
    names = [name for name, m in model.named_modules() if isinstance(m, kinds)]
    fused = 0
    for name in names:  # by name, one group at a time: each group's unfused weights are freed before the next
        if (new := _fused(model.get_submodule(name))) is not None:
            parent, _, attr = name.rpartition(".")
            setattr(model.get_submodule(parent) if parent else model, attr, new)
            fused += 1
    return fused
