"""Packed int4 weights -> bf16 for the dense path (prefill chunks, the vision encoder): code inductor generates for
each weight shape, or eager torch ops where inductor cannot run (no C++ compiler on the host).

The CPU int4 kernel's layout: per block of 64 output rows, [K, 32] bytes; the low nibble is row j, the high nibble
row j + 32; scales and zeros are bf16 [K/group, N, 2] with w = (q - 8) * scale + zero. We build W^T [K, N]: whole
32-byte runs move (W itself would need an element-wise transpose, ~10x slower) and the group scales broadcast
along contiguous rows. The arithmetic runs in fp32 and rounds to bf16 once, which gives exactly the kernel's own
weight values (tests/engine/test_quant.py), so a prompt prefilled densely sees the weights decoding sees.

Why compiled: eager torch ops make five passes over fp32 temporaries; inductor makes one vectorized loop that
reads the bytes and writes bf16 once. A 2048 x 2048 slice streamed from memory: 3.0 -> 0.8 ms; a whole 2.2B
decoder layer at 32 rows, unpack + dense GEMMs: 50 -> 19 ms, against 22 ms for the int4 kernel. So the dense path
takes over from 32 rows instead of 128 (quant.dense_rows).
Each shape gets its own graph with static sizes: with dynamic sizes inductor's loop lost its vectorization (3x
slower than eager). A model has a handful of slice shapes (quant.QuantLinear.dense_slices); `Scheduler.warm_up`
compiles them at load, ~1 s each on 2 cores (~10 s for the first one in a process with a cold inductor cache).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import torch

log = logging.getLogger(__name__)

BLOCK_N = 64  # the CPU int4 packing interleaves rows in blocks of 64
_NIBBLE_SHIFT = torch.tensor([0, 4], dtype=torch.uint8).view(2, 1)  # low nibble: rows j, high: rows j + 32
_compiled: dict[tuple[int, int, int], Callable[..., torch.Tensor]] = {}
_broken = False  # set when inductor failed once: eager from then on


def unpack_eager(weight: torch.Tensor, scales_zeros: torch.Tensor, group_size: int) -> torch.Tensor:
    """Packed uint8 [N, K/2] + bf16 [K/g, N, 2] -> W^T, bf16 [K, N], in eager torch ops (torch's bf16 multiply with
    a broadcast operand is ~5x slower than fp32's, hence the fp32 buffer)."""
    n, k = weight.shape[0], weight.shape[1] * 2
    b = weight.view(n // BLOCK_N, k, BLOCK_N // 2).transpose(0, 1)  # [K, N/64, 32]
    q = torch.empty(k, n // BLOCK_N, 2, BLOCK_N // 2)
    q[:, :, 0].copy_(b & 15)
    q[:, :, 1].copy_(b >> 4)
    scale, offset = _scale_offset(scales_zeros)
    by_group = q.view(k // group_size, group_size, n)
    torch.addcmul(offset.unsqueeze(1), by_group, scale.unsqueeze(1), out=by_group)
    return q.view(k, n).to(torch.bfloat16)


def _scale_offset(scales_zeros: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """-> fp32 [K/g, N] scale and offset (zero - 8 * scale), both contiguous: inductor vectorizes only contiguous
    loads, and these are 1/group of the weights."""
    sz = scales_zeros.float()
    scale = sz[..., 0].contiguous()
    return scale, sz[..., 1] - 8 * scale


def _unpack_graph(weight: torch.Tensor, scale: torch.Tensor, offset: torch.Tensor, group_size: int) -> torch.Tensor:
    """`unpack_eager` written for inductor: one loop nest whose innermost dimension is a contiguous 32-byte run."""
    n, k = weight.shape[0], weight.shape[1] * 2
    groups, blocks = k // group_size, n // BLOCK_N
    b = weight.view(blocks, groups, group_size, 1, BLOCK_N // 2).permute(1, 2, 0, 3, 4)
    q = ((b >> _NIBBLE_SHIFT) & 15).to(torch.float32)  # [K/g, g, N/64, 2, 32]
    by_block = (groups, 1, blocks, 2, BLOCK_N // 2)
    out = torch.addcmul(offset.view(by_block), q, scale.view(by_block))
    return out.to(torch.bfloat16).reshape(k, n)


def unpack_t(weight: torch.Tensor, scales_zeros: torch.Tensor, group_size: int) -> torch.Tensor:
    """Packed int4 -> W^T, bf16 [K, N]: compiled for this shape (compiling it on first use), or eager."""
    if torch.compiler.is_compiling():  # inside a compiled decode step: traced into that graph
        return _unpack_graph(weight, *_scale_offset(scales_zeros), group_size)
    if _broken:
        return unpack_eager(weight, scales_zeros, group_size)
    key = (weight.shape[0], weight.shape[1], group_size)
    if (fn := _compiled.get(key)) is not None:
        return fn(weight, *_scale_offset(scales_zeros), group_size)
    return _compile_and_run(key, weight, scales_zeros, group_size)


def _compile_and_run(
    key: tuple[int, int, int], weight: torch.Tensor, scales_zeros: torch.Tensor, group_size: int
) -> torch.Tensor:
    global _broken
    compile_: Any = torch.compile  # isolate_recompiles is missing from torch's typing stubs
    fn = compile_(_unpack_graph, dynamic=False, isolate_recompiles=True)  # one shape each: no shared limit
    try:
        out: torch.Tensor = fn(weight, *_scale_offset(scales_zeros), group_size)
    except Exception as exc:  # noqa: BLE001 - any inductor failure (no compiler, ...) means: stay eager
        _broken = True
        log.warning("int4 dense path runs eager (slower prefill): torch.compile failed: %s", type(exc).__name__)
        return unpack_eager(weight, scales_zeros, group_size)
    _compiled[key] = fn
    return out


def compiled() -> bool:
    """Whether unpacking runs inductor's code (True until a compile failed)."""
    return not _broken
