"""Static key/value cache for one attention layer.

Buffers are allocated once with a fixed [batch, kv_heads, max_len, head_dim] shape and written in place, so the
decode step never allocates and a later `torch.compile` of the one-token step sees static shapes. The batch
dimension is already there for continuous batching (one row per sequence); today the engine uses row 0.
"""

from __future__ import annotations

import torch


class KVCache:
    __slots__ = ("k", "v")

    def __init__(self, batch: int, kv_heads: int, max_len: int, head_dim: int, dtype: torch.dtype) -> None:
        self.k = torch.zeros(batch, kv_heads, max_len, head_dim, dtype=dtype)
        self.v = torch.zeros(batch, kv_heads, max_len, head_dim, dtype=dtype)

    @property
    def max_len(self) -> int:
        return self.k.shape[2]

    def update(self, pos: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Write k, v [B, kv_heads, T, head_dim] at positions pos..pos+T-1; return keys/values 0..pos+T-1.

        Returning only the filled prefix (a view, no copy) keeps eager decode cost proportional to the real
        context instead of max_len; a compiled path would return the full buffers plus a mask instead.
        """
        end = pos + k.shape[2]
        if end > self.max_len:
            raise IndexError(f"KV cache overflow: position {end} > capacity {self.max_len}")
        b = k.shape[0]
        self.k[:b, :, pos:end] = k
        self.v[:b, :, pos:end] = v
        return self.k[:b, :, :end], self.v[:b, :, :end]
