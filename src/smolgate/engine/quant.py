"""Load-time quantization: swap a built model's `nn.Linear` layers for int8 / int4 layers, or quantize while loading.

- int8: symmetric, one scale per output channel, weight-only: `torch._weight_int8pack_mm` with bf16 activations.
- int8-dynamic: the same weights, and each call also quantizes its input per row (one symmetric scale per token,
  "W8A8") for oneDNN's int8 GEMM (x86: AMX / VNNI) with exact int32 sums: faster than the weight-only kernel
  with weights streamed from DRAM, and than a dense bf16 GEMM at prefill sizes. Rows are quantized independently
  and the sums are exact, so a row's result does not depend on its batch. The price is accuracy on real
  activations with outlier channels (bench/quant_accuracy.py). Layers with <= 256 outputs (a slow oneDNN path,
  see ONEDNN_MIN_OUT), and CPUs without oneDNN, run weight-only.
- int4: asymmetric groups of 32 along K (the CPU kernel takes a zero point per group at no extra cost, and
  asymmetric uses all 16 levels on skewed groups); decode runs `torch._weight_int4pack_mm_for_cpu`. A layer the
  kernel cannot take (N % 64, K % group), or any layer on a CPU whose int4 packing dequant.py cannot unpack
  (ATen packs per vector width; AVX-512, AVX2 and plain C++ are known), falls back to int8.
- lm_head is int8 in both modes: a large share of the weights read per token (large vocab), and llama.cpp's
  Q4_K_M likewise keeps the output layer at higher precision. Norms and the patch conv stay in the model dtype.
- The token embedding table is int8 in every quantized mode (QuantEmbedding, one scale per token row): a lookup
  reads only its rows, so this is about memory, not speed.

The weight-only kernels are fast for a few rows, far slower than a dense bf16 GEMM at prefill shapes. So from
`dense_rows()` rows a layer dequantizes its weight to bf16 and runs dense matmuls, a slice of output channels at a
time (`DENSE_CHUNK`). Weight-only kernels compute in bf16 with fp32 accumulation (slower with fp32 activations);
outputs return in the caller's dtype. Figures: docs/performance.md, "Quantization".
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from . import dequant
from .config import ModelConfig
from .model.smolvlm import SmolVLM, checkpoint_to_module_name
from .onednn import ONEDNN_MIN_OUT, OnednnInt8, onednn_int8_available

QuantMode = Literal["none", "int8", "int8-dynamic", "int4"]
MODES: tuple[QuantMode, ...] = ("none", "int8", "int8-dynamic", "int4")
GROUP_SIZE = 32  # measured faster than 128 here (more groups, yet better cache use) and more accurate
LM_HEAD_MODE: QuantMode = "int8"
# Rows from which dequantize + dense bf16 matmul beats the weight-only kernel (bench/quant_kernels.py). An int8
# weight dequantizes with one cast; int4 must unpack nibbles and apply group scales, which inductor's code does
# fast enough (dequant.py) to win from ~64K / K rows (narrow inputs make small GEMMs), at least 32. Eager
# unpacking, where inductor cannot run, wins only from 128.
INT8_DENSE_ROWS, INT4_DENSE_ROWS, INT4_EAGER_DENSE_ROWS = 16, 32, 128
INT4_DENSE_WORK = 1 << 16  # rows x in_features
# Output channels are dequantized at most this many weights at a time: a temporary above 32 MiB is a fresh mmap
# on every call (glibc's limit for serving from the heap, see malloc.py), one page fault per 4 KiB. 4M weights
# keep the eager int4 unpack's fp32 temporary (16 MiB) on the heap too.
DENSE_CHUNK = 4 << 20
COMPUTE_DTYPE = torch.bfloat16
_CHUNK_ROWS = 1024  # quantize this many rows at a time: temporaries stay a fraction of one layer


@dataclass(frozen=True, slots=True)
class PackedInt8:
    weight: torch.Tensor  # int8 [N, K]
    scales: torch.Tensor  # bf16 [N]


@dataclass(frozen=True, slots=True)
class PackedInt4:
    weight: torch.Tensor  # uint8 [N, K/2], the CPU kernel's packed layout
    scales_zeros: torch.Tensor  # bf16 [K/group, N, 2]: w = (q - 8) * scale + zero
    group_size: int


Packed = PackedInt8 | PackedInt4


@dataclass(frozen=True, slots=True)
class Int4Codes:
    """A weight that arrives already quantized in int4 groups along K (a Q4 GGUF tensor: gguf_blocks.py), so an
    int4 layer takes its codes as they are instead of re-quantizing floats: w = (q - 8) * scale + zero."""

    codes: torch.Tensor  # uint8 [N, K], 0..15
    scale: torch.Tensor  # float32 [N, K / group]
    zero: torch.Tensor  # float32 [N, K / group]
    dtype: torch.dtype  # the model's, for dense()

    @property
    def group_size(self) -> int:
        return self.codes.shape[1] // self.scale.shape[1]

    def packed(self) -> PackedInt4:
        """The int4 kernel's layout (for shapes int4_supported takes)."""
        weight = torch._convert_weight_to_int4pack_for_cpu(self.codes.to(torch.int32), 2)
        sz = torch.stack([self.scale, self.zero], dim=-1).transpose(0, 1).contiguous().to(COMPUTE_DTYPE)
        return PackedInt4(weight, sz, self.group_size)

    def dense(self) -> torch.Tensor:
        """The weights the codes stand for, [N, K] in the model's dtype."""
        n, k = self.codes.shape
        g = self.codes.view(n, -1, self.group_size).float().sub_(8)
        return g.mul_(self.scale[..., None]).add_(self.zero[..., None]).view(n, k).to(self.dtype)


Weight = torch.Tensor | Int4Codes  # what a checkpoint stream yields for a Linear weight


def int4_supported(out_features: int, in_features: int, group_size: int = GROUP_SIZE) -> bool:
    """Whether the CPU int4 kernel (and our unpacking for the dense path) takes this shape on this CPU."""
    return (
        group_size in (32, 64, 128, 256)
        and in_features % group_size == 0
        and out_features % dequant.BLOCK_N == 0
        and dequant.int4_layout() is not None
    )


def _quantize_int8(w: torch.Tensor) -> PackedInt8:
    q = torch.empty(w.shape, dtype=torch.int8)
    scales = torch.empty(w.shape[0], dtype=torch.float32)
    for r in range(0, w.shape[0], _CHUNK_ROWS):
        chunk = w[r : r + _CHUNK_ROWS].to(torch.float32, copy=True)  # divided in place below
        s = chunk.abs().amax(dim=1).clamp(min=1e-12) / 127  # symmetric: 0 stays exact, no zero point
        q[r : r + _CHUNK_ROWS] = chunk.div_(s[:, None]).round_().clamp_(-127, 127).to(torch.int8)
        scales[r : r + _CHUNK_ROWS] = s
    return PackedInt8(q, scales.to(COMPUTE_DTYPE))


def _quantize_int4(w: torch.Tensor, group_size: int) -> PackedInt4:
    n, k = w.shape
    chunks = []
    for r in range(0, n, _CHUNK_ROWS):  # _CHUNK_ROWS % 64 == 0, so chunks pack independently
        g = w[r : r + _CHUNK_ROWS].float().view(-1, k // group_size, group_size)
        lo, hi = g.amin(dim=-1, keepdim=True), g.amax(dim=-1, keepdim=True)
        scale = ((hi - lo) / 15).clamp(min=1e-12)
        q = (g - lo).div_(scale).round_().clamp_(0, 15).to(torch.uint8).view(-1, k)
        # zero is the value at q = 8
        chunks.append(Int4Codes(q, scale[..., 0], (lo + 8 * scale)[..., 0], COMPUTE_DTYPE).packed())
    scales_zeros = torch.cat([c.scales_zeros for c in chunks], dim=1)
    return PackedInt4(torch.cat([c.weight for c in chunks]), scales_zeros, group_size)


def quantize_linear_weight(weight: torch.Tensor, mode: QuantMode, *, group_size: int = GROUP_SIZE) -> Packed:
    """A Linear weight [N, K] (any float dtype) -> packed int8 or int4 (int8 when int4 cannot take the shape)."""
    n, k = weight.shape
    if mode == "int4" and int4_supported(n, k, group_size):
        return _quantize_int4(weight.detach(), group_size)
    if mode in ("int8", "int4"):
        return _quantize_int8(weight.detach())
    raise ValueError(f"cannot quantize a weight with mode {mode!r}")


def dense_rows(bits: int, in_features: int) -> int:
    """Rows from which a weight-only layer dequantizes and runs dense GEMMs instead of its kernel."""
    if bits == 8:
        return INT8_DENSE_ROWS
    if not dequant.compiled():
        return INT4_EAGER_DENSE_ROWS
    return max(INT4_DENSE_ROWS, -(-INT4_DENSE_WORK // in_features))


class QuantLinear(nn.Module):
    """A bias-optional Linear whose weight is packed int8 or int4 (buffers, so state_dict round-trips)."""

    def __init__(
        self, packed: Packed, bias: torch.Tensor | None, in_features: int, *, dynamic: bool = False
    ) -> None:
        super().__init__()
        self.dynamic = dynamic and isinstance(
            packed, PackedInt8
        )  # int8-dynamic: W8A8 on oneDNN where it runs
        self.in_features, self.out_features = in_features, packed.weight.shape[0]
        self.group_size = packed.group_size if isinstance(packed, PackedInt4) else 0
        self.weight: torch.Tensor
        self.scales: torch.Tensor
        self.register_buffer("weight", packed.weight)
        self.register_buffer(
            "scales", packed.scales if isinstance(packed, PackedInt8) else packed.scales_zeros
        )
        self.bias = None if bias is None else nn.Parameter(bias.detach(), requires_grad=False)
        # int8 on oneDNN: holds the only copy of the weight (see _w8a8)
        self._onednn: OnednnInt8 | None = None
        self._decided = False  # whether _w8a8 chose between oneDNN and the weight-only kernel
        self._w8a8()

    @property
    def bits(self) -> int:
        return 4 if self.group_size else 8

    @property
    def dense_from(self) -> int:
        """Rows from which a weight-only layer dequantizes for dense GEMMs."""
        return dense_rows(self.bits, self.in_features)

    @property
    def weight_only(self) -> bool:
        """Whether this layer runs a weight-only kernel (a few rows) or dense GEMMs (from `dense_from` rows)."""
        return self._w8a8() is None

    def int8_weight(self) -> torch.Tensor:
        return self._onednn.weight() if self._onednn is not None else self.weight

    def packed(self) -> Packed:
        if self.group_size:
            return PackedInt4(self.weight, self.scales, self.group_size)
        return PackedInt8(self.int8_weight(), self.scales)

    def _w8a8(self) -> OnednnInt8 | None:
        """The oneDNN form of an int8-dynamic layer (None: weight-only, or no oneDNN here), made as soon as the
        weight is real.
        Preparing it frees the plain weight, so int8 memory stays one copy (and packing right away, layer by layer
        while loading, lets the next layer reuse that memory instead of leaving freed holes in the heap);
        state_dict and packed() read the weight back from oneDNN's layout."""
        if (
            self._onednn is None
            and not self._decided
            and self.dynamic
            and self.out_features >= ONEDNN_MIN_OUT
            and not self.weight.is_meta
        ):
            # decided once, while loading: a compiled step that traced onednn_int8_available() would trace its
            # probe (dynamo looks through functools.cache)
            self._decided = True
            if onednn_int8_available():
                self._onednn = OnednnInt8.prepare(self.weight, self.scales)
                self.weight = torch.empty(0, dtype=torch.int8)
        return self._onednn

    def _save_to_state_dict(self, destination: dict[str, Any], prefix: str, keep_vars: bool) -> None:
        super()._save_to_state_dict(destination, prefix, keep_vars)
        if self._onednn is not None:
            destination[prefix + "weight"] = self._onednn.weight()

    def set_packed(self, packed: Packed) -> None:
        """Replace the (possibly meta) buffers with loaded ones of the same kind and shape."""
        expected = self.weight.shape if self.group_size else torch.Size(self.shape)
        if isinstance(packed, PackedInt4) != bool(self.group_size) or packed.weight.shape != expected:
            raise ValueError("packed weight does not match this layer's kind or shape")
        self.weight = packed.weight
        self.scales = packed.scales if isinstance(packed, PackedInt8) else packed.scales_zeros
        self._onednn, self._decided = None, False
        self._w8a8()

    def dequantized(self) -> torch.Tensor:
        """The weight as bf16 [N, K] (exactly the values the kernels use)."""
        if self.group_size:
            parts = [self._unpack_t(start, end) for start, end in self.dense_slices()]
            return (parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)).t()
        return dequant.dequantize_int8(self.int8_weight(), self.scales)

    def dense_weight(self, rows: int) -> torch.Tensor | None:
        """The bf16 [N, K] weight, scales folded in, for callers with their own dense kernels (the vision encoder's
        fused GELU / residual GEMMs) at `rows` rows: None where this layer's own path is the faster one (a W8A8
        layer, or fewer rows than `dense_from`)."""
        if not self.weight_only or rows < self.dense_from:
            return None
        return self.dequantized()

    @property
    def shape(self) -> tuple[int, int]:
        return self.out_features, self.in_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x2 = x.reshape(-1, self.in_features)
        if (w8a8 := self._w8a8()) is not None:
            y = w8a8(x2)
        else:  # cast, then flatten: compiled, the cast of the flat view got a column-major buffer, which the
            # weight-only kernels reject (inductor does not know they need rows contiguous; torch 2.13)
            y = self._weight_only(x.to(COMPUTE_DTYPE).reshape(-1, self.in_features))
        y = y.to(x.dtype)
        if self.bias is not None:
            y = y + self.bias
        return y.view(*x.shape[:-1], self.out_features)

    def _weight_only(self, x2: torch.Tensor) -> torch.Tensor:
        """bf16 [M, K] -> [M, N]: the weight-only kernel, or from `dense_from` rows dequantize + dense GEMMs."""
        if x2.shape[0] >= self.dense_from:
            return self.dense_matmul(x2)
        if self.group_size:
            return torch._weight_int4pack_mm_for_cpu(x2, self.weight, self.group_size, self.scales)
        return torch._weight_int8pack_mm(x2, self.weight, self.scales)

    def dense_matmul(self, x2: torch.Tensor) -> torch.Tensor:
        """bf16 [M, K] -> [M, N] through the dequantized weight and dense GEMMs, DENSE_CHUNK weights at a time."""
        parts = [self._dense(x2, start, end) for start, end in self.dense_slices()]
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)

    def dense_slices(self) -> list[tuple[int, int]]:
        """The [start, end) output-channel slices the dense path dequantizes one at a time (DENSE_CHUNK weights at
        most; a multiple of the int4 packing's 64-row blocks)."""
        block = dequant.BLOCK_N
        step = max(block, DENSE_CHUNK // self.in_features // block * block)
        return [(n, min(n + step, self.out_features)) for n in range(0, self.out_features, step)]

    def _unpack_t(self, start: int, end: int) -> torch.Tensor:
        """The int4 weight of output channels [start, end), transposed: bf16 [K, end - start]."""
        return dequant.unpack_int4_t(self.weight[start:end], self.scales[:, start:end], self.group_size)

    def _dense(self, x2: torch.Tensor, start: int, end: int) -> torch.Tensor:
        """x2 @ the dequantized weight of output channels [start, end) -> bf16 [M, end - start]."""
        if self.group_size:
            return x2 @ self._unpack_t(start, end)
        # int8 values are exact in bf16; scale the [M, N] output instead of the [N, K] weight
        return F.linear(x2, self.weight[start:end].to(COMPUTE_DTYPE)) * self.scales[start:end]

    def extra_repr(self) -> str:
        kind = f"int4, group {self.group_size}" if self.group_size else "int8"
        return f"in_features={self.in_features}, out_features={self.out_features}, {kind}"


def warm_up_dense(model: nn.Module, stop: Callable[[], bool] = lambda: False) -> int:
    """Compile the int4 unpack for each slice shape the model's dense path meets (dequant.py), so no request
    waits on a compile -> how many shapes (0 without int4 layers, or where inductor cannot run); `stop()` true
    between two shapes ends it early (the engine closed)."""
    slices = {
        (end - start, m.in_features, m.group_size): (m, start, end)
        for m in model.modules()
        if isinstance(m, QuantLinear) and m.group_size
        for start, end in m.dense_slices()
    }
    for m, start, end in slices.values():
        if not dequant.compiled():  # a compile failed: the eager path has nothing to prepare
            return 0
        if stop():
            break
        m._unpack_t(start, end)
    return len(slices) if dequant.compiled() else 0


class QuantEmbedding(nn.Module):
    """An embedding table stored int8 with one symmetric scale per row; lookups dequantize only the rows they read,
    into the model's dtype."""

    def __init__(self, packed: PackedInt8, dtype: torch.dtype) -> None:
        super().__init__()
        self.num_embeddings, self.embedding_dim = packed.weight.shape
        self.dtype = dtype
        self.weight: torch.Tensor
        self.scales: torch.Tensor
        self.register_buffer("weight", packed.weight)
        self.register_buffer("scales", packed.scales)

    def set_packed(self, packed: PackedInt8, dtype: torch.dtype) -> None:
        """Replace the (possibly meta) buffers; lookups now return `dtype` (the loaded checkpoint's)."""
        if packed.weight.shape != (self.num_embeddings, self.embedding_dim):
            raise ValueError("packed embedding does not match this table's shape")
        self.weight, self.scales, self.dtype = packed.weight, packed.scales, dtype

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        rows = F.embedding(ids, self.weight).to(self.dtype)
        return rows.mul_(F.embedding(ids, self.scales[:, None]).to(self.dtype))

    def extra_repr(self) -> str:
        return f"{self.num_embeddings}, {self.embedding_dim}, int8"


def _quantize_embedding(model: nn.Module, skip: Sequence[str]) -> None:
    """Swap a SmolVLM's token embedding for a QuantEmbedding (meta buffers on a meta model) - unless it is skipped,
    or tied to an lm_head left dense (which must keep reading the same float tensor)."""
    text = getattr(model, "text", None)
    table = getattr(text, "embed_tokens", None)
    name = "text.embed_tokens"
    if not isinstance(table, nn.Embedding) or _matches(name, skip):
        return
    cfg = getattr(model, "cfg", None)
    tied = cfg is not None and cfg.text.tie_word_embeddings
    if tied and not isinstance(getattr(model, "lm_head", None), QuantLinear):
        return
    v, d = table.weight.shape
    packed = (
        _meta_packed(v, d, "int8", GROUP_SIZE)
        if table.weight.is_meta
        else _quantize_int8(table.weight.detach())
    )
    assert isinstance(packed, PackedInt8)
    text.embed_tokens = QuantEmbedding(packed, table.weight.dtype)  # type: ignore[union-attr]


def _matches(name: str, patterns: Sequence[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


def layer_mode(name: str, shape: tuple[int, int], mode: QuantMode, group_size: int = GROUP_SIZE) -> QuantMode:
    """The mode a Linear named `name` of weight shape [N, K] gets under `mode` (from name and shape only)."""
    if mode == "none":
        return "none"
    if mode == "int8-dynamic":
        return "int8"
    if name == "lm_head" or name.endswith(".lm_head"):
        return LM_HEAD_MODE
    return "int4" if mode == "int4" and int4_supported(shape[0], shape[1], group_size) else "int8"


def _meta_packed(n: int, k: int, mode: QuantMode, group_size: int) -> Packed:
    meta = torch.device("meta")
    if mode == "int4":
        return PackedInt4(
            torch.empty(n, k // 2, dtype=torch.uint8, device=meta),
            torch.empty(k // group_size, n, 2, dtype=COMPUTE_DTYPE, device=meta),
            group_size,
        )
    return PackedInt8(
        torch.empty(n, k, dtype=torch.int8, device=meta), torch.empty(n, dtype=COMPUTE_DTYPE, device=meta)
    )


def quantize_model(
    model: nn.Module,
    mode: QuantMode,
    *,
    group_size: int = GROUP_SIZE,
    skip: Sequence[str] = (),
    weight_only: Sequence[str] = (),
) -> nn.Module:
    """Swap every `nn.Linear` (text decoder, vision encoder, connector, lm_head) for a QuantLinear, and the token
    embedding for a QuantEmbedding, in place.

    `skip` holds fnmatch patterns of module names to keep as they are; under int8-dynamic, layers matching
    `weight_only` stay weight-only int8. On a `meta` model the new layers get
    meta buffers, ready for `load_quantized`. Returns the model.
    """
    if mode not in MODES:
        raise ValueError(f"quant mode must be one of {MODES}, not {mode!r}")
    if mode == "none":
        return model
    targets = [
        (name, m)
        for name, m in model.named_modules()
        if isinstance(m, nn.Linear) and not _matches(name, skip)
    ]
    for name, linear in targets:
        n, k = linear.weight.shape
        lm = layer_mode(name, (n, k), mode, group_size)
        if linear.weight.is_meta:
            packed = _meta_packed(n, k, lm, group_size)
        else:
            packed = quantize_linear_weight(linear.weight, lm, group_size=group_size)
        parent, _, attr = name.rpartition(".")
        dynamic = mode == "int8-dynamic" and not _matches(name, weight_only)
        layer = QuantLinear(packed, linear.bias, k, dynamic=dynamic)
        setattr(model.get_submodule(parent) if parent else model, attr, layer)
    _quantize_embedding(model, skip)
    return model


def quantizing_stream(
    model: SmolVLM, tensors: Iterable[tuple[str, Weight]], *, group_size: int = GROUP_SIZE
) -> Iterator[tuple[str, torch.Tensor]]:
    """Quantize checkpoint tensors bound for QuantLinear weights as they arrive; pass every other tensor on.

    Each weight is dropped right after packing, so at most one full-precision layer is alive at a time. A tied
    lm_head that is quantized gets its own packed copy of the embedding.
    Raises KeyError, once the stream is exhausted, if a quantized layer received no weight.
    """
    layers: dict[str, QuantLinear | QuantEmbedding] = {
        n: m for n, m in model.named_modules() if isinstance(m, (QuantLinear, QuantEmbedding))
    }
    pending = set(layers)
    tied_head = model.cfg.text.tie_word_embeddings and "lm_head" in layers
    for name, tensor in tensors:
        ours = checkpoint_to_module_name(name)
        layer_name = ours.removesuffix(".weight") if ours is not None else None
        if isinstance(tensor, Int4Codes):
            layer = layers.get(layer_name or "")
            if (
                isinstance(layer, QuantLinear)
                and layer.group_size == tensor.group_size
                and int4_supported(tensor.codes.shape[0], tensor.codes.shape[1], tensor.group_size)
            ):
                layer.set_packed(tensor.packed())  # the file's own codes: nothing re-quantized
                pending.discard(str(layer_name))
                continue
            tensor = tensor.dense()
        if tied_head and layer_name == "text.embed_tokens":
            head = layers["lm_head"]
            assert isinstance(head, QuantLinear)
            packed = quantize_linear_weight(tensor, _mode_of(head))
            head.set_packed(packed)
            pending.discard("lm_head")
            embed = layers.get(layer_name)
            if isinstance(embed, QuantEmbedding) and isinstance(packed, PackedInt8):
                embed.set_packed(packed, tensor.dtype)  # the same int8 rows: quantized once, stored once
                pending.discard(layer_name)
                del tensor
                continue
        if layer_name in layers:
            layer = layers[layer_name]
            if isinstance(layer, QuantEmbedding):
                layer.set_packed(_quantize_int8(tensor), tensor.dtype)
            else:
                layer.set_packed(quantize_linear_weight(tensor, _mode_of(layer), group_size=group_size))
            pending.discard(layer_name)
            del tensor  # else the loop variable keeps this layer alive while the next one is read
            continue
        yield name, tensor
    if pending:
        raise KeyError(
            f"checkpoint lacks weights for {len(pending)} quantized layers, e.g. {sorted(pending)[:3]}"
        )


def _mode_of(layer: QuantLinear) -> QuantMode:
    return "int4" if layer.group_size else "int8"


def load_quantized(
    model: SmolVLM,
    tensors: Iterable[tuple[str, Weight]],
    mode: QuantMode,
    *,
    group_size: int = GROUP_SIZE,
    skip: Sequence[str] = (),
    weight_only: Sequence[str] = (),
) -> SmolVLM:
    """Fill a SmolVLM built on the `meta` device from (checkpoint name, tensor) pairs, quantizing layer by layer."""
    quantize_model(model, mode, group_size=group_size, skip=skip, weight_only=weight_only)
    model.load_weights(quantizing_stream(model, tensors, group_size=group_size))
    return model


def build_quantized_model(
    cfg: ModelConfig,
    tensors: Iterable[tuple[str, Weight]],
    mode: QuantMode,
    *,
    group_size: int = GROUP_SIZE,
    skip: Sequence[str] = (),
    weight_only: Sequence[str] = (),
) -> SmolVLM:
    """`model.smolvlm.build_model` with quantization at load time: peak memory = quantized model + one layer."""
    with torch.device("meta"):
        model = SmolVLM(cfg)
    load_quantized(model, tensors, mode, group_size=group_size, skip=skip, weight_only=weight_only)
    model.eval().requires_grad_(False)
    return model
