"""Quantized weights -> bf16 for the dense paths (prefill chunks, the vision encoder): code inductor generates for
each weight shape, or eager torch ops where inductor cannot run (no C++ compiler on the host).

int4: the CPU int4 kernel's layout depends on the CPU: ATen packs for the vector width it runs with (chosen at
run time), so `int4_layout()` reads it off a probe packing. With AVX-512 it is, per block of 64 output rows,
[K, 32] bytes; the low nibble is row j, the high nibble row j + 32. With AVX2, blocks of 32 rows, [K, 16] bytes,
rows j and j + 16; the plain C++ build packs rows 2j and 2j + 1 together. Scales and zeros are bf16
[K/group, N, 2] with w = (q - 8) * scale + zero. We build W^T [K, N]: whole runs of bytes move (W itself would
need an element-wise transpose) and the group scales broadcast along contiguous rows. The arithmetic runs in fp32
and rounds to bf16 once, which gives exactly the kernel's own weight values (tests/engine/test_quant.py), so a
prompt prefilled densely sees the weights decoding sees. Eager torch ops make five passes over fp32 temporaries;
inductor makes one vectorized loop that reads the bytes and writes bf16 once, fast enough that the dense path
takes over from 32 rows instead of 128 (quant.dense_rows).

int8: W * per-channel scale, [N, K] bf16, for the vision encoder's fused GEMMs (weight-only int8 layers, and the
int8 fallback of int4 mode where so400m's 4304-wide layers do not fit the int4 kernel).

Each shape gets its own graph with static sizes: with dynamic sizes inductor's loop lost its vectorization. A model
has a handful of shapes (quant.QuantLinear.dense_slices, the encoder's layers); `Scheduler.warm_up` compiles them
at load. Figures: docs/performance.md, "Quantization".
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from . import inductor

log = logging.getLogger(__name__)

BLOCK_N = 64  # int4 layers have N % 64 == 0 and dense slices start at multiples of 64: whole packing blocks
_SHIFT = torch.tensor([0, 4], dtype=torch.uint8)  # low nibble, high nibble
_compiled: dict[tuple[str, int, int, int], Callable[..., torch.Tensor]] = {}  # (kind, *shape)
_broken = False  # set when inductor failed once: eager from then on
_probed: dict[str, Int4Layout | None] = {}  # "layout": int4_layout()
_aside = threading.local()  # `active` on the threads compile_aside starts
_one_at_a_time = (
    threading.Lock()
)  # those threads (one per engine loaded) compile in turn: dynamo is one at a time
_warming_lock = threading.Lock()
_warming_count = 0  # such threads started and not done: meanwhile other threads dequantize eagerly


@dataclass(frozen=True, slots=True)
class Int4Layout:
    """Where torch's CPU int4 packing puts output rows: per block of `block` rows, K runs of block/2 bytes; byte j
    of a run holds rows (j, j + block/2) in its (low, high) nibbles, or rows (2j, 2j + 1) when `pairs`."""

    block: int
    pairs: bool = False

    def rows(self) -> torch.Tensor:
        """[block/2, 2]: the row (within its block) of each byte's low and high nibble."""
        j = torch.arange(self.block // 2)
        return torch.stack([2 * j, 2 * j + 1] if self.pairs else [j, j + self.block // 2], dim=1)


# ATen's packings for its AVX-512, AVX2 and plain C++ kernels (torch 2.13)
KNOWN_LAYOUTS = (Int4Layout(64), Int4Layout(32), Int4Layout(32, pairs=True))


def int4_layout() -> Int4Layout | None:
    """The packing torch's int4 kernel uses on this CPU, probed once (None: none we can unpack, so int4 layers
    fall back to int8). A plain dict, not functools.cache: dynamo reads it inside compiled steps."""
    if "layout" not in _probed:
        _probed["layout"] = _probe_layout()
    return _probed["layout"]


def _probe_layout() -> Int4Layout | None:
    """Six packings of a 64-row weight, one per bit of the row index, say which row each nibble came from."""
    n, k = BLOCK_N, 4
    row = torch.arange(n)[:, None].expand(n, k)
    found = torch.zeros(n * k // 2, 2, dtype=torch.long)  # per packed byte: the source row of (low, high)
    for bit in range(6):
        packed = torch._convert_weight_to_int4pack_for_cpu(((row >> bit) & 1).to(torch.int32).contiguous(), 2)
        b = packed.flatten().long()
        found |= torch.stack([b & 1, (b >> 4) & 1], dim=1) << bit
    for layout in KNOWN_LAYOUTS:
        blocks = torch.arange(n // layout.block).view(-1, 1, 1, 1) * layout.block
        want = blocks + layout.rows().expand(k, -1, -1)  # [blocks, K, block/2, 2]: in byte order
        if torch.equal(found, want.reshape(-1, 2)):
            return layout
    return None


def _layout() -> Int4Layout:
    layout = int4_layout()
    assert layout is not None, "int4 weights on a CPU whose int4 packing is unknown (quant.int4_supported)"
    return layout


def unpack_int4_eager(weight: torch.Tensor, scales_zeros: torch.Tensor, group_size: int) -> torch.Tensor:
    """Packed uint8 [N, K/2] + bf16 [K/g, N, 2] -> W^T, bf16 [K, N], in eager torch ops."""
    layout = _layout()
    return _unpack_eager(weight, *_scale_offset(scales_zeros), group_size, layout.block, layout.pairs)


def _unpack_eager(
    weight: torch.Tensor, scale: torch.Tensor, offset: torch.Tensor, group_size: int, block: int, pairs: bool
) -> torch.Tensor:
    """(torch's bf16 multiply with a broadcast operand is much slower than fp32's, hence the fp32 buffer)"""
    n, k = weight.shape[0], weight.shape[1] * 2
    b = weight.view(n // block, k, block // 2).transpose(0, 1)  # [K, N/block, block/2]
    q = torch.empty(k, n // block, block)
    # where a byte's low and high nibbles go: neighbouring rows, or the block's first and second half
    low, high = q.view(k, n // block, -1, 2).unbind(3) if pairs else q.view(k, n // block, 2, -1).unbind(2)
    low.copy_(b & 15)
    high.copy_(b >> 4)
    by_group = q.view(k // group_size, group_size, n)
    torch.addcmul(offset.unsqueeze(1), by_group, scale.unsqueeze(1), out=by_group)
    return q.view(k, n).to(torch.bfloat16)


def _scale_offset(scales_zeros: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """-> fp32 [K/g, N] scale and offset (zero - 8 * scale), both contiguous: inductor vectorizes only contiguous
    loads, and these are 1/group of the weights."""
    sz = scales_zeros.float()
    scale = sz[..., 0].contiguous()
    return scale, sz[..., 1] - 8 * scale


def _unpack_graph(
    weight: torch.Tensor, scale: torch.Tensor, offset: torch.Tensor, group_size: int, block: int, pairs: bool
) -> torch.Tensor:
    """`_unpack_eager` written for inductor: one loop nest whose innermost dimension is a contiguous run of bytes
    (32 with AVX-512's packing)."""
    n, k = weight.shape[0], weight.shape[1] * 2
    groups, blocks, run = k // group_size, n // block, block // 2
    if pairs:  # a byte's nibbles are neighbouring rows: [K/g, g, N/block, run, 2]
        b = weight.view(blocks, groups, group_size, run, 1).permute(1, 2, 0, 3, 4)
        nibble, by_block = _SHIFT.view(1, 2), (groups, 1, blocks, run, 2)
    else:  # low nibbles are a block's first half of rows, high nibbles its second: [K/g, g, N/block, 2, run]
        b = weight.view(blocks, groups, group_size, 1, run).permute(1, 2, 0, 3, 4)
        nibble, by_block = _SHIFT.view(2, 1), (groups, 1, blocks, 2, run)
    q = ((b >> nibble) & 15).to(torch.float32)
    out = torch.addcmul(offset.view(by_block), q, scale.view(by_block))
    return out.to(torch.bfloat16).reshape(k, n)


def unpack_int4_t(weight: torch.Tensor, scales_zeros: torch.Tensor, group_size: int) -> torch.Tensor:
    """Packed int4 -> W^T, bf16 [K, N]: compiled for this shape (compiling it on first use), or eager."""
    layout = _layout()
    args = (weight, *_scale_offset(scales_zeros), group_size, layout.block, layout.pairs)
    if torch.compiler.is_compiling():  # inside a compiled decode step: traced into that graph
        return _unpack_graph(*args)
    return _run(("int4", weight.shape[0], weight.shape[1], group_size), _unpack_graph, _unpack_eager, args)


def int8_eager(weight: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    """int8 [N, K] x bf16 [N] channel scales -> bf16 [N, K] (int8 x bf16 -> bf16 in one pass)."""
    return weight * scales[:, None]


def _int8_graph(weight: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    return (weight.float() * scales.float()[:, None]).to(torch.bfloat16)


def dequantize_int8(weight: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    """int8 [N, K] and bf16 [N] scales -> bf16 [N, K]: compiled for this shape, or eager."""
    if torch.compiler.is_compiling():
        return int8_eager(weight, scales)
    return _run(("int8", weight.shape[0], weight.shape[1], 0), _int8_graph, int8_eager, (weight, scales))


def _run(
    key: tuple[str, int, int, int],
    graph: Callable[..., torch.Tensor],
    eager: Callable[..., torch.Tensor],
    args: tuple[Any, ...],
) -> torch.Tensor:
    """graph(*args) through this shape's compiled code (compiled on first use), or eager(*args), the same values,
    where inductor failed."""
    global _broken
    if _broken:
        return eager(*args)
    if (fn := _compiled.get(key)) is not None:
        return fn(*args)
    if _warming_count and not getattr(_aside, "active", False):
        return eager(*args)  # the warm-up thread compiles this shape: the same values, no second compile
    compile_: Any = torch.compile  # isolate_recompiles is missing from torch's typing stubs
    # one shape each: no shared recompile limit; the vector width pinned (inductor.py)
    fn = compile_(graph, dynamic=False, isolate_recompiles=True, options=inductor.options())
    try:
        out: torch.Tensor = fn(*args)
    except Exception as exc:  # any inductor failure (no compiler, ...) means: stay eager
        _broken = True
        log.warning(
            "dense paths dequantize eagerly (slower prefill): torch.compile failed: %s", type(exc).__name__
        )
        return eager(*args)
    _compiled[key] = fn
    return out


def compile_aside(warm: Callable[[], object]) -> threading.Thread:
    """Run `warm` (dequantizing each of a model's shapes once, which compiles them) on a thread of its own, so a
    server answers while inductor works: until it is done, other threads dequantize eagerly (the same values)."""
    global _warming_count
    with _warming_lock:
        _warming_count += 1

    def run() -> None:
        global _warming_count
        _aside.active = True
        try:
            with _one_at_a_time, torch.inference_mode():
                warm()
        except Exception:  # the eager path stays; a bug here must not end the server
            log.exception("compiling the dense paths' dequantizing failed; they stay eager")
        finally:
            with _warming_lock:
                _warming_count -= 1

    thread = threading.Thread(target=run, name="smolgate-compile", daemon=True)
    thread.start()
    return thread


def warming() -> bool:
    """Whether a compile_aside thread is still at work."""
    return _warming_count > 0


def compiled() -> bool:
    """Whether dequantizing runs inductor's code (True until a compile failed)."""
    return not _broken
