"""Static key/value cache for one attention layer, with one row per sequence.

Buffers are allocated once with a fixed [rows, kv_heads, max_len, head_dim] shape and written in place, so a step
never allocates cache memory. Two write paths:
- `update(pos, k, v, row)`: T consecutive positions of the sequences in rows row..row+B-1 (prefill, single decode);
- `update_rows(positions, k, v, kv_len)`: one token per row for rows 0..n-1, each at its own position (batched
  decode); the caller masks keys beyond each row's position, so stale keys of earlier occupants never leak.
`write(at, k, v)` takes the one a `Span` (where a forward's tokens go) names.
"""

from __future__ import annotations

import math
import mmap
from dataclasses import dataclass

import torch

FRESH_MEMORY_BYTES = 1 << 20  # buffers from this size are mapped from the kernel (see `zeroed`)


@dataclass(frozen=True, slots=True)
class Span:
    """Where a forward's tokens go in the KV cache.

    Prefill / single sequence: positions pos..pos+T-1 of cache rows row..row+B-1. Batched decode (`positions`
    set): one token per row for rows 0..n-1, row i at positions[i], attending to keys 0..kv_len-1 under a mask.
    """

    pos: int = 0
    row: int = 0
    positions: torch.Tensor | None = None  # [n] long
    kv_len: int = 0


class KVCache:
    __slots__ = ("_rows", "k", "v")

    def __init__(self, batch: int, kv_heads: int, max_len: int, head_dim: int, dtype: torch.dtype) -> None:
        # zeros, not empty: masked-out keys still enter q·k before the mask, and NaN garbage would poison softmax
        self.k = zeroed((batch, kv_heads, max_len, head_dim), dtype)
        self.v = zeroed((batch, kv_heads, max_len, head_dim), dtype)
        self._rows = torch.arange(batch)  # row index for the batched scatter, built once

    @property
    def max_len(self) -> int:
        return self.k.shape[2]

    @property
    def rows(self) -> int:
        return self.k.shape[0]

    def write(self, at: Span, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Write k, v [B, kv_heads, T, head_dim] where `at` says -> the keys and values to attend to."""
        if at.positions is not None:
            return self.update_rows(at.positions, k, v, at.kv_len)
        return self.update(at.pos, k, v, at.row)

    def update(
        self, pos: int, k: torch.Tensor, v: torch.Tensor, row: int = 0
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Write k, v [B, kv_heads, T, head_dim] at positions pos..pos+T-1 of rows row..row+B-1; return their keys
        and values 0..pos+T-1.

        Returning only the filled prefix (a view, no copy) keeps eager cost proportional to the real context
        instead of max_len.
        """
        end = pos + k.shape[2]
        if end > self.max_len:
            raise IndexError(f"KV cache overflow: position {end} > capacity {self.max_len}")
        b = k.shape[0]
        self.k[row : row + b, :, pos:end] = k
        self.v[row : row + b, :, pos:end] = v
        return self.k[row : row + b, :, :end], self.v[row : row + b, :, :end]

    def update_rows(
        self, positions: torch.Tensor, k: torch.Tensor, v: torch.Tensor, kv_len: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Row i of k, v [n, kv_heads, 1, head_dim] goes to position positions[i] of row i; returns keys/values
        [n, kv_heads, kv_len, head_dim] (views). kv_len must exceed every position (the caller's max + 1)."""
        n = k.shape[0]
        rows = self._rows[:n]
        # advanced indices around a slice: the indexed view is [n, kv_heads, head_dim]
        self.k[rows, :, positions] = k[:, :, 0]
        self.v[rows, :, positions] = v[:, :, 0]
        return self.k[:n, :, :kv_len], self.v[:n, :, :kv_len]

    def move_row(self, src: int, dst: int, length: int) -> None:
        """Copy the first `length` positions of row src into row dst (compacting the batch after a departure)."""
        self.k[dst, :, :length] = self.k[src, :, :length]
        self.v[dst, :, :length] = self.v[src, :, :length]

    def copy_row_from(self, other: KVCache, src: int, dst: int, length: int) -> None:
        """Copy the first `length` positions of `other`'s row src into row dst (a prompt prefilled on its own)."""
        self.k[dst, :, :length] = other.k[src, :, :length]
        self.v[dst, :, :length] = other.v[src, :, :length]

    def resized(self, rows: int, max_len: int, keep_rows: int) -> KVCache:
        """A new cache of [rows, max_len] holding this one's first keep_rows rows (all positions that fit)."""
        new = KVCache(rows, self.k.shape[1], max_len, self.k.shape[3], self.k.dtype)
        n, length = min(keep_rows, rows, self.rows), min(max_len, self.max_len)
        new.k[:n, :, :length] = self.k[:n, :, :length]
        new.v[:n, :, :length] = self.v[:n, :, :length]
        return new

    @staticmethod
    def bytes_per_token(kv_heads: int, head_dim: int, layers: int, dtype: torch.dtype) -> int:
        """Cache bytes one position of one row costs across all layers (keys and values)."""
        return 2 * kv_heads * head_dim * layers * torch.empty(0, dtype=dtype).element_size()


def zeroed(shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    """A tensor of zeros; a big one on fresh anonymous memory, which the kernel hands out as zero pages: nothing is
    written up front, and memory is taken only where steps write (in pages of up to 2 MB). torch.zeros wrote every
    byte: growing the batch's caches for an 8k-token prompt joining it (330 MB for SmolLM2-135M) held every stream
    for ~0.45 s, against ~0.03 s this way (docs/performance.md, "Fair under load"). The mapping lives as long as
    the tensor."""
    nbytes = math.prod(shape) * dtype.itemsize
    if nbytes < FRESH_MEMORY_BYTES:
        return torch.zeros(shape, dtype=dtype)
    buffer = mmap.mmap(-1, nbytes)
    if hasattr(mmap, "MADV_HUGEPAGE"):  # Linux: huge pages, fewer TLB misses when attention reads the keys
        buffer.madvise(mmap.MADV_HUGEPAGE)
    return torch.frombuffer(buffer, dtype=dtype).view(shape)
