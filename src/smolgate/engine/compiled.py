"""Opt-in `torch.compile` of the batched decode step (`Limits.compile`, `compile: true` in a local route).

Inductor fuses each layer's norms, RoPE, residual adds and SiLU into a few C++ loops, leaving the projections to
the same kernels as eager (they are external calls in the graph). On small models, whose step is dominated by
per-op cost, that is worth a lot: SmolLM2-135M int4 decode 13.9 -> 9.7 ms per token (see the issue note for the
bench). The price is warm-up: tracing and compiling the three graphs takes ~40-50 s for 135M on a 2-core CPU
(~2.5 min for 2.2B int8-dynamic), which is why it is off by default.

Serving meets three shapes that dynamic shapes cannot merge (PyTorch specializes sizes 0 and 1): one row in a
one-row cache, one row in a bigger cache, and several rows. `warm_up` compiles all three before the first request,
so no request pays for a compile. Two things keep those graphs general:
- duck shaping is off while tracing: by default sizes that happen to be equal at trace time share one symbol
  (batch rows = cache rows, cache length = RoPE table length), and every later mismatch would recompile;
- the RoPE tables are built for the whole context first, so they never change once traced.
Guards on the model's weights are skipped (1.0 -> 0.45 ms per 135M step): a loaded model's weights never change
shape or dtype, and the graph reads them afresh on every call. Every other guard stays: dynamo shares compiled code
between all models in the process (two local routes), and the module types, config constants and RoPE tables' dtype
are what tell one model's graph from another's.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.fx.experimental._config

from .model.smolvlm import SmolVLM

StepFn = Callable[..., torch.Tensor]
WARM_CACHE_LEN = 64  # positions of the scratch caches used to trace (any length > 1 gives the same graph)


def compile_decode_step(model: SmolVLM) -> StepFn:
    """`model.decode_rows`, compiled with dynamic batch size, positions and cache length."""
    options: dict[str, str | int | bool | Callable[..., Any]] = {"guard_filter_fn": _skip_weight_guards}
    return torch.compile(model.decode_rows, dynamic=True, options=options)  # type: ignore[return-value]


def _skip_weight_guards(entries: list[Any]) -> list[bool]:
    """Keep every guard but those on module parameters and buffers (one tensor check per weight, ~300 on 135M)."""
    return [not _weight_guard(e) for e in entries]


def _weight_guard(e: Any) -> bool:
    return bool(e.orig_guard.source.is_unspecialized_nn_module()) and (
        "._parameters[" in e.name or "._buffers[" in e.name
    )


@torch.inference_mode()
def warm_up(step: StepFn, model: SmolVLM, tokens: torch.Tensor, positions: torch.Tensor) -> None:
    """Trace and compile the three decode-step graphs serving meets, on scratch caches, on the decode thread.

    tokens [slots, 1] / positions [slots] are the scheduler's own input buffers: guards check the very tensors
    serving passes (made outside inference mode, unlike the caches), so a graph traced on look-alikes could miss.
    """
    model.text.ensure_rope(max(model.cfg.text.max_position_embeddings, WARM_CACHE_LEN))
    with torch.fx.experimental._config.patch(use_duck_shape=False):  # type: ignore[attr-defined]
        wide = min(3, tokens.shape[0])  # cache rows of the general graphs (any size > 1)
        for rows, cache_rows in [(1, 1)] + ([(1, wide), (2, wide)] if wide > 1 else []):
            caches = model.text.new_caches(cache_rows, WARM_CACHE_LEN)
            positions[:rows] = torch.arange(5, 5 + rows)
            step(tokens[:rows], positions[:rows], 5 + rows, caches)
    tokens.zero_()
    positions.zero_()
