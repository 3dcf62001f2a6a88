"""Speed as load-time module swaps: the model files hold the reference math, these modules swap in faster
modules that compute the same function (same weights, no copy) once a model is built.

- fuse.py: q/k/v and gate/up projections as one GEMM each;
- gemv.py: the text decoder's dense projections and lm_head as GemvLinear (a few bf16 rows as W @ x^T);
- encoder.py: the vision encoder's fused GELU / residual GEMMs (row-split by rowsplit.py) and attention padding.
"""

from __future__ import annotations

from torch import nn

from ..model.smolvlm import SmolVLM
from .encoder import speed_up_encoder
from .fuse import fuse_projections
from .gemv import gemv_linear, swap_text_linears


def speed_up(model: SmolVLM) -> None:
    """Apply every swap to a built (dense or quantized) model, in place."""
    fuse_projections(model)
    swap_text_linears(model.text)
    if type(model.lm_head) is nn.Linear:
        model.lm_head = gemv_linear(model.lm_head)
    if model.vision is not None:
        speed_up_encoder(model.vision)
