"""`residual + x @ w.T` in bf16, as two GEMMs of half the rows where oneDNN would run the whole on one thread.

oneDNN picks its GEMM decomposition from the shape, and for some shapes (narrow outputs at ~1k rows, e.g. the
256M / 500M encoder's fc2 and out_proj on one tile) that leaves a single partition: the GEMM runs on one core of
two, while two halves run on both. Elsewhere the split costs. Which shapes fall in that zone depends on the oneDNN
version and the CPU, so each shape is measured once, the first time it is met, and the faster way kept; the encoder
meets its one- and two-tile shapes while the model warms up at load (VisionModel.warm_up). Figures:
docs/performance.md, "Vision encoder".
"""

from __future__ import annotations

import time

import torch

MIN_ROWS, MAX_ROWS = 512, 2048  # outside this range oneDNN kept both cores busy in every shape we tried
SPLIT_GAIN = 0.8  # split only if it takes at most this fraction of the whole GEMM's time
_PROBE_RUNS = 3
_split: dict[tuple[int, int, int], bool] = {}  # (rows, K, N) -> whether two halves are faster


def addmm(residual: torch.Tensor, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """residual [M, N] + x [M, K] @ w[N, K].T -> a new [M, N] tensor."""
    m, k = x.shape
    if not MIN_ROWS <= m <= MAX_ROWS or torch.get_num_threads() < 2 or torch.compiler.is_compiling():
        return torch.addmm(residual, x, w.t())
    key = (m, k, w.shape[0])
    if (split := _split.get(key)) is None:
        split = _split[key] = _probe(residual, x, w)
    return _halves(residual, x, w) if split else torch.addmm(residual, x, w.t())


def _halves(residual: torch.Tensor, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    out = torch.empty(residual.shape, dtype=torch.result_type(residual, x))
    h = x.shape[0] // 2
    torch.addmm(residual[:h], x[:h], w.t(), out=out[:h])
    torch.addmm(residual[h:], x[h:], w.t(), out=out[h:])
    return out


def _probe(residual: torch.Tensor, x: torch.Tensor, w: torch.Tensor) -> bool:
    """Time both ways (best of a few runs each, interleaved so a load change hits both) -> whether to split."""
    whole, halves = float("inf"), float("inf")
    for _ in range(_PROBE_RUNS + 1):  # the first round also warms oneDNN's primitive cache
        t0 = time.perf_counter()
        torch.addmm(residual, x, w.t())
        t1 = time.perf_counter()
        _halves(residual, x, w)
        t2 = time.perf_counter()
        whole, halves = min(whole, t1 - t0), min(halves, t2 - t1)
    return halves <= SPLIT_GAIN * whole
