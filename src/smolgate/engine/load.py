"""Build the model the engine serves: the reference model (quantized while loading if asked), then the
load-time kernel swaps (kernels/)."""

from __future__ import annotations

from collections.abc import Iterable

from .config import ModelConfig
from .kernels import speed_up
from .model.smolvlm import SmolVLM, build_model
from .quant import Int4Codes, QuantMode, Weight, build_quantized_model


def build(
    cfg: ModelConfig,
    tensors: Iterable[tuple[str, Weight]],
    quant: QuantMode | None,
    *,
    compiling: bool = False,
) -> SmolVLM:
    """(checkpoint name, tensor) pairs, already in the model's dtype -> the served model. `compiling`: the decode step (and an int8-dynamic
    vision encoder) will be compiled, which decides how the encoder is quantized."""
    if quant in (None, "none"):
        model = build_model(cfg, ((n, w.dense() if isinstance(w, Int4Codes) else w) for n, w in tensors))
    else:
        # Eager, an int8-dynamic encoder's per-token activation quantization runs as separate passes and W8A8
        # loses to weight-only int8; compiled, inductor fuses those passes and W8A8 wins (docs/performance.md).
        weight_only = () if compiling else ("vision.*",)
        model = build_quantized_model(cfg, tensors, quant, weight_only=weight_only)
    speed_up(model)
    return model
