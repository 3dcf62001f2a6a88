"""Opt-in `torch.compile` of the batched decode step (`Limits.compile`, `compile: true` in a local route).

Inductor fuses each layer's norms, RoPE, residual adds and SiLU into a few C++ loops, leaving the projections to
the same kernels as eager (they are external calls in the graph). On small models, whose step is dominated by
per-op cost, that is worth a lot: SmolLM2-135M int4 decode 13.9 -> 9.7 ms per token (see the issue note for the
bench). The price is warm-up: tracing and compiling the model takes ~15-40 s on a 2-core CPU (inductor's on-disk
cache makes later starts shorter), which is why it is off by default.

Serving meets three shapes that dynamic shapes cannot merge (PyTorch specializes sizes 0 and 1): one row in a
one-row cache, one row in a bigger cache, and several rows. `warm_up` compiles all three before the first request,
so no request pays for a compile. Two things keep those graphs general:
- duck shaping is off while tracing: by default sizes that happen to be equal at trace time share one symbol
  (batch rows = cache rows, cache length = RoPE table length), and every later mismatch would recompile;
- the RoPE tables are built for the whole context first, so they never change once traced.
Guards on the model's modules are skipped (0.9 -> 0.3 ms per 135M step): a loaded model never changes.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.fx.experimental._config

from .model.smolvlm import SmolVLM

StepFn = Callable[..., torch.Tensor]
WARM_CACHE_LEN = 64  # positions of the scratch caches used to trace (any length > 1 gives the same graph)


def compile_decode_step(model: SmolVLM) -> StepFn:
    """`model.decode_rows`, compiled with dynamic batch size, positions and cache length."""
    options = {"guard_filter_fn": torch.compiler.skip_guard_on_all_nn_modules_unsafe}
    return torch.compile(model.decode_rows, dynamic=True, options=options)  # type: ignore[return-value]


@torch.inference_mode()
def warm_up(step: StepFn, model: SmolVLM, tokens: torch.Tensor, positions: torch.Tensor) -> None:
    """Trace and compile the three decode-step graphs serving meets, on scratch caches, on the decode thread.

    tokens [slots, 1] / positions [slots] are the scheduler's own input buffers: guards check the very tensors
    serving passes (made outside inference mode, unlike the caches), so a graph traced on look-alikes could miss.
    """
    model.text.ensure_rope(max(model.cfg.text.max_position_embeddings, WARM_CACHE_LEN))
    with torch.fx.experimental._config.patch(use_duck_shape=False):
        wide = min(3, tokens.shape[0])  # cache rows of the general graphs (any size > 1)
        for rows, cache_rows in [(1, 1)] + ([(1, wide), (2, wide)] if wide > 1 else []):
            caches = model.text.new_caches(cache_rows, WARM_CACHE_LEN)
            positions[:rows] = torch.arange(5, 5 + rows)
            step(tokens[:rows], positions[:rows], 5 + rows, caches)
    tokens.zero_()
    positions.zero_()
