"""oneDNN's int8 GEMM for int8-dynamic layers (quant.py): each call quantizes its input per row ("W8A8") and
oneDNN sums in exact int32 (x86: AMX / VNNI kernels).

Used only where it runs with a kernel of its own (`onednn_int8_available`): where oneDNN has none for the CPU it
runs its reference loops, hundreds of times slower than the weight-only kernel, and int8-dynamic layers run
weight-only instead.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

log = logging.getLogger(__name__)

COMPUTE_DTYPE = torch.bfloat16  # the weight-only kernel's activations (quant.COMPUTE_DTYPE)

_NO_ZERO_POINT = torch.zeros(1, dtype=torch.int64)
# oneDNN's int8 GEMM falls to a slow path for narrow outputs (N <= 256): such layers run the weight-only kernel.
ONEDNN_MIN_OUT = 257


# oneDNN slower than the weight-only int8 kernel by more than this on a small product: its reference loops
ONEDNN_REF_RATIO = 10.0


@functools.cache
def onednn_int8_works() -> bool:
    """Whether oneDNN's int8 GEMM runs in this torch build on this CPU (checked once, on a tiny product)."""
    try:
        packed = torch.ops.onednn.qlinear_prepack(torch.ones(64, 64, dtype=torch.int8), None)
        y = _onednn_mm(torch.ones(2, 64, dtype=torch.int8), packed, torch.ones(64), torch.float32)
        return bool((y == 64).all())
    except (RuntimeError, AttributeError, NotImplementedError):
        return False


@functools.cache
def onednn_int8_available() -> bool:
    """Whether int8-dynamic layers use oneDNN's int8 GEMM here: it runs, and with a kernel of its own. Where oneDNN
    has none for the CPU it runs its reference loops (seen on an AMD EPYC with AVX-512 VNNI, torch 2.13:
    `ref_int8` in ONEDNN_VERBOSE, 11 ms for one row of a 576 x 1536 layer, 4.6 s for 400 rows, where a dense bf16
    GEMM takes 0.2 and 1.7 ms), and the weight-only kernel is the faster path by orders of magnitude."""
    if not onednn_int8_works():
        return False
    ratio = _onednn_vs_weight_only()
    if ratio > ONEDNN_REF_RATIO:
        log.warning(
            "oneDNN has no int8 GEMM kernel for this CPU (its fallback ran %.0fx slower than the weight-only "
            "kernel): int8-dynamic layers run weight-only int8",
            ratio,
        )
        return False
    return True


def _onednn_vs_weight_only() -> float:
    """Time of oneDNN's int8 GEMM / the weight-only int8 kernel's on one small product (best of three each)."""
    n, k, m = 512, 256, 4  # n >= ONEDNN_MIN_OUT: the shape class int8-dynamic layers send to oneDNN
    w, scales = torch.ones(n, k, dtype=torch.int8), torch.ones(n)
    packed = torch.ops.onednn.qlinear_prepack(w, None)
    q, x = torch.ones(m, k, dtype=torch.int8), torch.ones(m, k, dtype=COMPUTE_DTYPE)

    def best(fn: Callable[[], object]) -> float:
        fn()
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        return min(times)

    onednn = best(lambda: _onednn_mm(q, packed, scales, COMPUTE_DTYPE))
    weight_only = best(lambda: torch._weight_int8pack_mm(x, w, scales.to(COMPUTE_DTYPE)))
    return onednn / max(weight_only, 1e-9)


def _onednn_mm(
    q: torch.Tensor, packed: torch.Tensor, w_scales: torch.Tensor, out: torch.dtype
) -> torch.Tensor:
    """int8 [M, K] x packed int8 weight -> [M, N] = (int32 sums) * w_scales, in `out` dtype."""
    return torch.ops.onednn.qlinear_pointwise(
        q, 1.0, 0, packed, w_scales, _NO_ZERO_POINT, None, 1.0, 0, out, "none", [], ""
    )


def quantize_rows(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """x [M, K] -> (int8 [M, K], fp32 scales [M, 1]): symmetric, one scale per row, x ~= q * scale."""
    xf = x.float()  # the input itself when already fp32: everything below is out of place
    scale = xf.abs().amax(dim=1, keepdim=True).div_(127).clamp_(min=1e-12)
    return torch.div(xf, scale).round_().to(torch.int8), scale


@dataclass(frozen=True, slots=True)
class OnednnInt8:
    """An int8 layer prepared for oneDNN: the weight in oneDNN's own (opaque) layout and fp32 channel scales."""

    packed: torch.Tensor
    w_scales: torch.Tensor

    @classmethod
    def prepare(cls, weight: torch.Tensor, scales: torch.Tensor) -> OnednnInt8:
        return cls(torch.ops.onednn.qlinear_prepack(weight, None), scales.float())

    def weight(self) -> torch.Tensor:
        """The plain int8 [N, K] weight back (oneDNN keeps it as [K, N])."""
        return self.packed.to_dense().t().contiguous()

    def __call__(self, x2: torch.Tensor) -> torch.Tensor:
        q, scale = quantize_rows(x2)
        out = x2.dtype if x2.dtype in (torch.float32, torch.bfloat16) else torch.float32
        if torch.compiler.is_compiling():
            # inductor cannot lower the oneDNN op on a runtime weight: only the GEMM is opaque, so the activation
            # quantization before it and the row scaling after it fuse with the neighbouring ops
            return onednn_int8_mm(q, self.packed, self.w_scales, out) * scale.to(out)
        return _onednn_mm(q, self.packed, self.w_scales, out).mul_(scale.to(out))


@torch.library.custom_op("smolgate::onednn_int8_mm", mutates_args=())
def onednn_int8_mm(
    q: torch.Tensor, packed: torch.Tensor, w_scales: torch.Tensor, out: torch.dtype
) -> torch.Tensor:
    """`_onednn_mm` as one opaque op for torch.compile (eager calls skip the custom-op dispatch cost)."""
    return _onednn_mm(q, packed, w_scales, out)


@onednn_int8_mm.register_fake
def _(q: torch.Tensor, packed: torch.Tensor, w_scales: torch.Tensor, out: torch.dtype) -> torch.Tensor:
    return q.new_empty(q.shape[0], w_scales.shape[0], dtype=out)
