"""Llama decoder (SmolLM2): RMSNorm, rotate-half RoPE, grouped-query attention, SwiGLU MLP.

Module names equal the checkpoint names under `model.text_model.` (SmolVLM) or `model.` (plain Llama), so a
state dict loads after stripping that prefix.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from ..config import TextConfig
from ..kvcache import KVCache, Span


def rope_cos_sin(positions: torch.Tensor, head_dim: int, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """positions [T] (int) -> cos, sin [T, head_dim] in fp32; the two halves repeat (rotate-half layout)."""
    inv_freq = 1.0 / theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)  # [hd/2]
    freqs = positions.to(torch.float32)[:, None] * inv_freq[None, :]  # [T, hd/2]
    emb = torch.cat((freqs, freqs), dim=-1)  # [T, hd]
    return emb.cos(), emb.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x [B, H, T, hd], cos/sin [T, hd] -> x rotated: x*cos + rotate_half(x)*sin."""
    half = x.shape[-1] // 2
    rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    return x * cos + rotated * sin


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Normalise in fp32 and cast back before the weight, exactly as the reference does (matters in bf16).
        h = x.float()
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * h.to(x.dtype)


class Attention(nn.Module):
    def __init__(self, cfg: TextConfig) -> None:
        super().__init__()
        self.n_heads, self.n_kv, self.head_dim = cfg.num_heads, cfg.num_kv_heads, cfg.head_dim
        self.q_proj = nn.Linear(cfg.hidden_size, cfg.num_heads * cfg.head_dim, bias=False)
        self.k_proj = nn.Linear(cfg.hidden_size, cfg.num_kv_heads * cfg.head_dim, bias=False)
        self.v_proj = nn.Linear(cfg.hidden_size, cfg.num_kv_heads * cfg.head_dim, bias=False)
        self.o_proj = nn.Linear(cfg.num_heads * cfg.head_dim, cfg.hidden_size, bias=False)

    def project(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x [B, T, D] -> q [B, T, H*hd], k, v [B, T, KV*hd]."""
        return self.q_proj(x), self.k_proj(x), self.v_proj(x)

    def forward(
        self,
        x: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        cache: KVCache,
        at: Span,
        mask: torch.Tensor | None,
    ) -> torch.Tensor:
        b, t, _ = x.shape
        q, k, v = self.project(x)
        q = q.view(b, t, self.n_heads, self.head_dim).transpose(1, 2)  # [B, H, T, hd]
        k = k.view(b, t, self.n_kv, self.head_dim).transpose(1, 2)  # [B, KV, T, hd]
        v = v.view(b, t, self.n_kv, self.head_dim).transpose(1, 2)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        k, v = cache.write(at, k, v)  # -> every key / value the queries attend to
        # Causal only when queries start at key 0; decode (t == 1) sees every cached key; else an explicit mask.
        causal = mask is None and t > 1
        if t == 1 and q.dtype != torch.float32:
            # one query per row: torch's bf16 CPU attention costs ~4x its float32 per cached key, more than the
            # upcast of the keys and values (docs/performance.md, "Decode attention")
            out = F.scaled_dot_product_attention(
                q.float(), k.float(), v.float(), attn_mask=mask, enable_gqa=self.n_kv != self.n_heads
            ).to(q.dtype)
        else:
            out = F.scaled_dot_product_attention(
                q, k, v, attn_mask=mask, is_causal=causal, enable_gqa=self.n_kv != self.n_heads
            )
        return self.o_proj(out.transpose(1, 2).reshape(b, t, -1))


class MLP(nn.Module):
    def __init__(self, cfg: TextConfig) -> None:
        super().__init__()
        self.gate_proj = nn.Linear(cfg.hidden_size, cfg.intermediate_size, bias=False)
        self.up_proj = nn.Linear(cfg.hidden_size, cfg.intermediate_size, bias=False)
        self.down_proj = nn.Linear(cfg.intermediate_size, cfg.hidden_size, bias=False)

    def gate_up(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x [B, T, D] -> gate, up [B, T, I]."""
        return self.gate_proj(x), self.up_proj(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.gate_up(x)
        return self.down_proj(F.silu(gate) * up)


class DecoderLayer(nn.Module):
    def __init__(self, cfg: TextConfig) -> None:
        super().__init__()
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.self_attn = Attention(cfg)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.mlp = MLP(cfg)

    def forward(
        self,
        x: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        cache: KVCache,
        at: Span,
        mask: torch.Tensor | None,
    ) -> torch.Tensor:
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, cache, at, mask)
        return x + self.mlp(self.post_attention_layernorm(x))


def run_decode_layer(
    layer: DecoderLayer,
    x: torch.Tensor,
    cos: torch.Tensor,
    sin: torch.Tensor,
    cache: KVCache,
    positions: torch.Tensor,
    kv_len: int,
    mask: torch.Tensor | None,
) -> torch.Tensor:
    """One layer of a batched decode step: the unit compiled.py compiles (one graph serves every layer)."""
    return layer(x, cos, sin, cache, Span(positions=positions, kv_len=kv_len), mask)


DecodeLayerRunner = Callable[
    [DecoderLayer, torch.Tensor, torch.Tensor, torch.Tensor, KVCache, torch.Tensor, int, torch.Tensor | None],
    torch.Tensor,
]


class TextModel(nn.Module):
    """Embedding + decoder layers + final norm. `forward` consumes embeddings so images can be spliced in."""

    def __init__(self, cfg: TextConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.layers = nn.ModuleList(DecoderLayer(cfg) for _ in range(cfg.num_layers))
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self._cos = self._sin = self._key_idx = torch.empty(0)

    @property
    def dtype(self) -> torch.dtype:
        """The activations' dtype (the norm's: a quantized model's embedding table is int8)."""
        return self.norm.weight.dtype

    def new_caches(self, rows: int, max_len: int, dtype: torch.dtype | None = None) -> list[KVCache]:
        """One zeroed KVCache per layer of [rows, max_len] positions."""
        c, dtype = self.cfg, dtype or self.dtype
        return [KVCache(rows, c.num_kv_heads, max_len, c.head_dim, dtype) for _ in range(c.num_layers)]

    def ensure_rope(self, length: int) -> None:
        """Grow the RoPE cos/sin tables (and the key index used for decode masks) to cover `length` positions."""
        if self._cos.shape[0] >= length:
            return
        c = self.cfg
        cos, sin = rope_cos_sin(torch.arange(length), c.head_dim, c.rope_theta)
        dtype = self.dtype
        self._cos, self._sin, self._key_idx = cos.to(dtype), sin.to(dtype), torch.arange(length)

    def _decoder_layers(self) -> list[DecoderLayer]:
        return cast(list[DecoderLayer], list(self.layers))

    def forward(
        self, x: torch.Tensor, pos: int = 0, *, row: int = 0, caches: list[KVCache] | None = None
    ) -> torch.Tensor:
        """x [B, T, hidden] embeddings at positions pos..pos+T-1 (cache rows row..) -> normed hidden [B, T, hidden].

        Without `caches`, a one-off pass over a fresh sequence (pos 0) on caches made for this call.
        """
        t = x.shape[1]
        if caches is None:
            if pos > 0:
                raise ValueError("a pass past position 0 continues a sequence: pass its caches")
            caches = self.new_caches(x.shape[0], t, x.dtype)
        self.ensure_rope(pos + t)
        cos, sin = self._cos[pos : pos + t], self._sin[pos : pos + t]
        mask = None
        if t > 1 and pos > 0:  # chunked prefill after earlier tokens: query i sees keys 0..pos+i
            mask = torch.ones(t, pos + t, dtype=torch.bool).tril(diagonal=pos)
        at = Span(pos, row)
        for layer, cache in zip(self._decoder_layers(), caches, strict=True):
            x = layer(x, cos, sin, cache, at, mask)
        return self.norm(x)

    def decode_rows(
        self,
        x: torch.Tensor,
        positions: torch.Tensor,
        kv_len: int,
        caches: list[KVCache],
        run_layer: DecodeLayerRunner = run_decode_layer,
    ) -> torch.Tensor:
        """x [n, 1, hidden]: one token per cache row 0..n-1, row i at positions[i] (< kv_len) -> hidden [n, 1, hidden].

        Rows sit at different positions, so RoPE is gathered per row and a mask hides each row's keys beyond its
        own position (the padding up to kv_len holds other sequences' stale keys, or zeros). `run_layer` runs
        each layer (compiled.py passes the compiled one).
        """
        n = x.shape[0]
        cos = self._cos[positions].view(n, 1, 1, -1)  # [n, 1 (heads), 1 (T), hd]
        sin = self._sin[positions].view(n, 1, 1, -1)
        mask = None
        if n > 1:  # a single row is its own longest sequence: every key up to kv_len is its own
            mask = (self._key_idx[:kv_len] <= positions[:, None]).view(n, 1, 1, kv_len)
        for layer, cache in zip(self._decoder_layers(), caches, strict=True):
            x = run_layer(layer, x, cos, sin, cache, positions, kv_len, mask)
        return self.norm(x)
