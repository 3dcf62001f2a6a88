"""`torch.compile` of the batched decode step (`Limits.compile`; `compile:` on a local route, "background" by
default there).

Inductor fuses each layer's norms, RoPE, residual adds and SiLU into a few C++ loops, leaving the projections to
the same kernels as eager (they are external calls in the graph). On small models, whose step is dominated by
per-op cost, that is worth a lot. What is compiled is one decoder layer (`run_decode_layer`): every layer has the
same code, so one graph per shape serves all of them, and compiling takes seconds where the whole step's 30-layer
graph took minutes (docs/performance.md, "Compiled decode step"); embedding, final norm and lm_head stay eager.

Serving meets three shapes that dynamic shapes cannot merge (PyTorch specializes sizes 0 and 1): one row in a
one-row cache, one row in a bigger cache, and several rows; with more slots than a weight-only layer's `dense_from`
(or, in bf16, than kernels/gemv.py's FEW_ROWS), also batches past that threshold. `warm_up` compiles them all
before the first request, so no request pays for a compile. Two things keep those graphs general:
- duck shaping is off while tracing: by default sizes that happen to be equal at trace time share one symbol
  (batch rows = cache rows, cache length = RoPE table length), and every later mismatch would recompile;
- the RoPE tables are built for the whole context first, so they never change once traced.
With int8-dynamic weights the vision encoder is compiled too (`compile_vision`): its eager time goes mostly to
the per-token activation quantization around each W8A8 GEMM, which inductor fuses into the norms and GELU before
it. Other modes keep the eager encoder, whose fused oneDNN GELU GEMM measured as fast or faster than inductor's
code. The encoder runs one tile at a time through a graph with static shapes: inductor's kernels ran slower in the
graph with a dynamic tile count.

Each model's graphs are its own (`isolate_recompiles`): by default dynamo counts the graphs of a function over
every model in the process, and past 8 (`recompile_limit`) it silently runs eager - a third compiled model, at
3-5 decode graphs each, would have decoded uncompiled.

A layer graph's guards on the layer's weights are skipped: a loaded model is never changed (the kernel swaps
happen while loading), so checking ~10 weights' shapes and dtypes on every call buys nothing but guard time. Its
module facts (types, hook dicts, constants such as a quantized layer's group size) stay: they are what tell one
layer's structure from another's (a Q4_K_M file mixes int4 and int8 layers). Every guard on the inputs (the
activations, positions, cache length, the cache's tensors) stays too: they pick the graph.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import torch
import torch.fx.experimental._config

from . import inductor
from .kernels.gemv import FEW_ROWS, GemvLinear
from .model import text, vision
from .model.smolvlm import SmolVLM
from .quant import QuantLinear

StepFn = Callable[..., torch.Tensor]
WARM_CACHE_LEN = 64  # positions of the scratch caches used to trace (any length > 1 gives the same graph)


def compile_decode_step(model: SmolVLM) -> StepFn:
    """`model.decode_rows` with each decoder layer compiled (dynamic batch size, positions and cache length)."""
    layer = _compile(text.run_decode_layer, dynamic=True, guard_filter=_skip_weight_guards)
    return functools.partial(model.decode_rows, run_layer=layer)


def compile_vision(model: SmolVLM) -> bool:
    """Compile the vision encoder's layers if it has W8A8 (int8-dynamic) layers -> whether it did."""
    encoder = model.vision
    if encoder is None or not any(isinstance(m, QuantLinear) and m.dynamic for m in encoder.modules()):
        return False
    # one graph serves every layer (same code, weights are inputs) and every request (one tile at a time)
    # its module facts stay guarded: they are what tell one layer's structure from another's
    layer = _compile(vision.run_layer, dynamic=False, guard_filter=_skip_weight_guards)

    def per_tile(block: vision.EncoderLayer, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        tiles = [
            layer(block, x[i : i + 1], None if mask is None else mask[i : i + 1]) for i in range(x.shape[0])
        ]
        return tiles[0] if len(tiles) == 1 else torch.cat(tiles)

    encoder.run_layer = per_tile
    return True


@torch.inference_mode()
def warm_up_vision(model: SmolVLM) -> None:
    """Compile the encoder graphs requests meet: a full tile and a partial one (padded patches are masked; when
    the sequence is padded for attention both have a mask and share one graph)."""
    encoder = model.vision
    assert encoder is not None
    side = encoder.cfg.patches_per_side
    pixels = torch.zeros(1, 3, encoder.cfg.image_size, encoder.cfg.image_size, dtype=model.dtype)
    partial = torch.ones(1, side, side, dtype=torch.bool)
    partial[:, :, side // 2 :] = False
    for mask in (None, partial):
        encoder(pixels, mask)


def _compile(
    fn: Callable[..., Any], *, dynamic: bool, guard_filter: Callable[[list[Any]], list[bool]]
) -> Any:
    """torch.compile with this model's own graphs (isolate_recompiles, missing from torch's typing stubs)."""
    compile_: Any = torch.compile
    options = inductor.options(guard_filter_fn=guard_filter)  # the vector width pinned (see inductor.py)
    return compile_(fn, dynamic=dynamic, options=options, isolate_recompiles=True)


def _skip_weight_guards(entries: list[Any]) -> list[bool]:
    """Keep every guard but those on module parameters and buffers."""
    return [not _weight_guard(e) for e in entries]


def _weight_guard(e: Any) -> bool:
    return bool(e.orig_guard.source.is_unspecialized_nn_module()) and (
        "._parameters[" in e.name or "._buffers[" in e.name
    )


@torch.inference_mode()
def warm_up(
    step: StepFn,
    model: SmolVLM,
    tokens: torch.Tensor,
    positions: torch.Tensor,
    stop: Callable[[], bool] = lambda: False,
) -> None:
    """Trace and compile the decode-layer graphs serving meets, on scratch caches; `stop()` true between two
    graphs ends it early (the engine closed).

    tokens [slots, 1] / positions [slots] are the scheduler's own input buffers: guards check the very tensors
    serving passes (made outside inference mode, unlike the caches), so a graph traced on look-alikes could miss.
    """
    model.text.ensure_rope(max(model.cfg.text.max_position_embeddings, WARM_CACHE_LEN))
    with torch.fx.experimental._config.patch(use_duck_shape=False):  # type: ignore[attr-defined]
        wide = min(3, tokens.shape[0])  # cache rows of the general graphs (any size > 1)
        shapes = [(1, 1)] + ([(1, wide), (2, wide)] if wide > 1 else [])
        # weight-only layers branch on the row count (their kernel below `dense_from`, dense GEMMs from there on),
        # so batches that can reach a threshold need the graph past it too
        layers = list(model.text.layers.modules())
        dense = {m.dense_from for m in layers if isinstance(m, QuantLinear) and m.weight_only}
        # and so do bf16 projections (W @ x^T up to FEW_ROWS rows, F.linear past it: kernels/gemv.py)
        if model.dtype == torch.bfloat16 and any(type(m) is GemvLinear for m in layers):
            dense.add(FEW_ROWS + 1)
        shapes += [(t, t + 1) for t in sorted(dense) if 2 < t <= tokens.shape[0]]
        for rows, cache_rows in shapes:
            if stop():
                break
            caches = model.text.new_caches(cache_rows, WARM_CACHE_LEN)
            positions[:rows] = torch.arange(5, 5 + rows)
            step(tokens[:rows], positions[:rows], 5 + rows, caches)
    tokens.zero_()
    positions.zero_()
