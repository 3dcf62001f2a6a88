"""The per-step token budget: how much prompt a scheduler iteration may prefill so nobody waits long.

One iteration runs one decode step for every running row plus some prefill. Its work is bounded in "positions":
each decoding row costs one, a prompt chunk costs its positions weighted by the context they attend to. At the
start of a prompt a position costs its weight GEMMs; deep in a long prompt its attention over thousands of keys
costs more (SmolLM2-135M: as much again at ~3k positions, 3.5x at 8k), so a fixed-width chunk near the end of an
8k prompt would hold the step ~3.5x longer than the first one. Sizing chunks by this cost keeps every iteration,
and so every running stream's inter-token gap and a newcomer's wait, about as long as the budget says.
"""

from __future__ import annotations

import math

from .config import TextConfig


def attention_scale(cfg: TextConfig) -> float:
    """The context length at which one position's attention work (q.k and p.v over every key) equals its weight
    work (the projections and the MLP): the `scale` of `prefill_cost` and `chunk_size`."""
    q, kv = cfg.num_heads * cfg.head_dim, cfg.num_kv_heads * cfg.head_dim
    weights = (
        cfg.hidden_size * (2 * q + 2 * kv) + 3 * cfg.hidden_size * cfg.intermediate_size
    )  # MACs per position
    return weights / (2 * q)  # attention: 2 x q MACs per key


def prefill_cost(positions: int, start: int, scale: float) -> float:
    """Budget a chunk of `positions` prompt positions from `start` costs (their mean context: start + positions/2)."""
    return positions * (1.0 + (start + positions / 2) / scale)


def chunk_size(remaining: int, start: int, budget: int, scale: float) -> int:
    """Prompt positions to prefill now (at least 1, at most `remaining`): as many as `budget` covers at this
    depth, then evened out over the chunks still to come (600 positions: 300 + 300, not 512 + 88) since a short
    last chunk costs about a long one's time where int4 layers switch to dense GEMMs only from a few dozen rows."""
    # largest t with t * (1 + (start + t/2) / scale) <= budget: a quadratic in t
    a, b = 0.5 / scale, 1.0 + start / scale
    fit = int((-b + math.sqrt(b * b + 4 * a * budget)) / (2 * a))
    fit = max(1, min(fit, remaining))
    pieces = -(-remaining // fit)
    return -(-remaining // pieces)
