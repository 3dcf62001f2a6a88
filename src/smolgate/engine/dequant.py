"""Quantized weights -> bf16 for the dense paths (prefill chunks, the vision encoder): code inductor generates for
each weight shape, or eager torch ops where inductor cannot run (no C++ compiler on the host).

int4: the CPU int4 kernel's layout is, per block of 64 output rows, [K, 32] bytes; the low nibble is row j, the
high nibble row j + 32; scales and zeros are bf16 [K/group, N, 2] with w = (q - 8) * scale + zero. We build W^T
[K, N]: whole 32-byte runs move (W itself would need an element-wise transpose, ~10x slower) and the group scales
broadcast along contiguous rows. The arithmetic runs in fp32 and rounds to bf16 once, which gives exactly the
kernel's own weight values (tests/engine/test_quant.py), so a prompt prefilled densely sees the weights decoding
sees. Eager torch ops make five passes over fp32 temporaries; inductor makes one vectorized loop that reads the
bytes and writes bf16 once. A 2048 x 2048 slice streamed from memory: 3.0 -> 0.8 ms; a whole 2.2B decoder layer
at 32 rows, unpack + dense GEMMs: 50 -> 19 ms, against 22 ms for the int4 kernel. So the dense path takes over
from 32 rows instead of 128 (quant.dense_rows).

int8: W * per-channel scale, [N, K] bf16, for the vision encoder's fused GEMMs (weight-only int8 layers, and the
int8 fallback of int4 mode where so400m's 4304-wide layers do not fit the int4 kernel): 1.16 -> 0.57 ms per
4304 x 1152 weight; the 2.2B encoder dequantizes ~400M weights per call.

Each shape gets its own graph with static sizes: with dynamic sizes inductor's loop lost its vectorization (3x
slower than eager). A model has a handful of shapes (quant.QuantLinear.dense_slices, the encoder's layers);
`Scheduler.warm_up` compiles them at load, ~1 s each on 2 cores (~10 s for the first one in a process with a cold
inductor cache).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import torch

log = logging.getLogger(__name__)

BLOCK_N = 64  # the CPU int4 packing interleaves rows in blocks of 64
_NIBBLE_SHIFT = torch.tensor([0, 4], dtype=torch.uint8).view(2, 1)  # low nibble: rows j, high: rows j + 32
_compiled: dict[tuple[str, int, int, int], Callable[..., torch.Tensor]] = {}  # (kind, *shape)
_broken = False  # set when inductor failed once: eager from then on


def unpack_int4_eager(weight: torch.Tensor, scales_zeros: torch.Tensor, group_size: int) -> torch.Tensor:
    """Packed uint8 [N, K/2] + bf16 [K/g, N, 2] -> W^T, bf16 [K, N], in eager torch ops."""
    return _unpack_eager(weight, *_scale_offset(scales_zeros), group_size)


def _unpack_eager(
    weight: torch.Tensor, scale: torch.Tensor, offset: torch.Tensor, group_size: int
) -> torch.Tensor:
    """(torch's bf16 multiply with a broadcast operand is ~5x slower than fp32's, hence the fp32 buffer)"""
    n, k = weight.shape[0], weight.shape[1] * 2
    b = weight.view(n // BLOCK_N, k, BLOCK_N // 2).transpose(0, 1)  # [K, N/64, 32]
    q = torch.empty(k, n // BLOCK_N, 2, BLOCK_N // 2)
    q[:, :, 0].copy_(b & 15)
    q[:, :, 1].copy_(b >> 4)
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
    weight: torch.Tensor, scale: torch.Tensor, offset: torch.Tensor, group_size: int
) -> torch.Tensor:
    """`_unpack_eager` written for inductor: one loop nest whose innermost dimension is a contiguous 32-byte run."""
    n, k = weight.shape[0], weight.shape[1] * 2
    groups, blocks = k // group_size, n // BLOCK_N
    b = weight.view(blocks, groups, group_size, 1, BLOCK_N // 2).permute(1, 2, 0, 3, 4)
    q = ((b >> _NIBBLE_SHIFT) & 15).to(torch.float32)  # [K/g, g, N/64, 2, 32]
    by_block = (groups, 1, blocks, 2, BLOCK_N // 2)
    out = torch.addcmul(offset.view(by_block), q, scale.view(by_block))
    return out.to(torch.bfloat16).reshape(k, n)


def unpack_int4_t(weight: torch.Tensor, scales_zeros: torch.Tensor, group_size: int) -> torch.Tensor:
    """Packed int4 -> W^T, bf16 [K, N]: compiled for this shape (compiling it on first use), or eager."""
    args = (weight, *_scale_offset(scales_zeros), group_size)
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
    compile_: Any = torch.compile  # isolate_recompiles is missing from torch's typing stubs
    fn = compile_(graph, dynamic=False, isolate_recompiles=True)  # one shape each: no shared recompile limit
    try:
        out: torch.Tensor = fn(*args)
    except Exception as exc:  # noqa: BLE001 - any inductor failure (no compiler, ...) means: stay eager
        _broken = True
        log.warning(
            "dense paths dequantize eagerly (slower prefill): torch.compile failed: %s", type(exc).__name__
        )
        return eager(*args)
    _compiled[key] = fn
    return out


def compiled() -> bool:
    """Whether dequantizing runs inductor's code (True until a compile failed)."""
    return not _broken
