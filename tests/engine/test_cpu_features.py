"""Kernels chosen by CPU feature at run time: the engine's numeric paths hold on an AVX2 machine too.

torch picks its kernels by CPU when it starts: ATen's vector width (ATEN_CPU_CAPABILITY), oneDNN's ISA
(ONEDNN_MAX_CPU_ISA), MKL's (MKL_ENABLE_INSTRUCTIONS). A subprocess with all three capped at AVX2 runs as an
AVX2-only machine would, whatever this one has. Two things broke there: ATen packs int4 weights in 32-row
blocks with AVX2 (64 with AVX-512), and the dense path unpacked them as 64 (garbage prefill logits); inductor's
on-disk cache handed AVX-512 code compiled earlier to the AVX2 process (NaN from a compiled GEMV).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from test_linear import test_compiled_gemv_path_matches_eager_without_graph_breaks as compile_gemv_here

from smolgate.engine import dequant

REPO = Path(__file__).resolve().parents[2]
AVX2_MACHINE = {
    "ATEN_CPU_CAPABILITY": "avx2",
    "ONEDNN_MAX_CPU_ISA": "AVX2",
    "MKL_ENABLE_INSTRUCTIONS": "AVX2",
}
# the numeric tests whose kernels depend on the CPU: bf16 GEMV / GEMM paths (oneDNN), the compiled GEMV
# (inductor), the int4 / int8 kernels against the dense path's (compiled) dequantization (ATen's packing)
SELECTION = [
    "tests/engine/test_linear.py::test_few_rows_give_f_linears_values",
    "tests/engine/test_linear.py::test_compiled_gemv_path_matches_eager_without_graph_breaks",
    "tests/engine/test_quant.py::test_dequantized_weight_is_what_the_kernel_computes_with",
    "tests/engine/test_quant.py::test_dense_path_in_slices_of_output_channels",
]


@pytest.mark.skipif(
    torch.backends.cpu.get_cpu_capability() not in ("AVX2", "AVX512"), reason="not an x86-64 CPU with AVX2"
)
def test_numeric_paths_hold_on_an_avx2_machine() -> None:
    compile_gemv_here()  # inductor's cache now holds this CPU's code for the GEMV the AVX2 run compiles too
    env = {**os.environ, **AVX2_MACHINE}
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-x", *SELECTION]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=240, check=False)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]


def _pack(q: torch.Tensor, layout: dequant.Int4Layout) -> torch.Tensor:
    """uint8 [N, K/2] the way `layout` says torch packs int4 values q [N, K] (0..15)."""
    n, k = q.shape
    rows = layout.rows()  # [block/2, 2]
    blocks = q.view(n // layout.block, layout.block, k).transpose(1, 2)  # [N/block, K, block]
    low, high = blocks[..., rows[:, 0]], blocks[..., rows[:, 1]]  # [N/block, K, block/2]
    return (low | (high << 4)).to(torch.uint8).reshape(n, k // 2)


@pytest.mark.parametrize(
    "layout", dequant.KNOWN_LAYOUTS, ids=lambda x: f"{x.block}{'-pairs' if x.pairs else ''}"
)
def test_int4_unpacking_reads_every_known_packing(layout: dequant.Int4Layout) -> None:
    """AVX-512, AVX2 and plain C++ packings, whichever this CPU uses: eager and graph code give W^T exactly."""
    torch.manual_seed(0)
    n, k, group = 128, 64, 32
    q = torch.randint(0, 16, (n, k), dtype=torch.int32)
    scales_zeros = torch.randn(k // group, n, 2).to(torch.bfloat16)
    scale, offset = dequant._scale_offset(scales_zeros)
    want = torch.addcmul(offset.repeat_interleave(group, 0), q.t().float(), scale.repeat_interleave(group, 0))
    packed = _pack(q, layout)
    for unpack in (dequant._unpack_eager, dequant._unpack_graph):  # the graph's ops, run eagerly
        got = unpack(packed, scale, offset, group, layout.block, layout.pairs)
        assert torch.equal(got, want.to(torch.bfloat16)), unpack.__name__


def test_this_cpus_int4_packing_is_known() -> None:
    layout = dequant.int4_layout()
    assert layout is not None
    q = torch.randint(0, 16, (128, 64), dtype=torch.int32)
    assert torch.equal(torch._convert_weight_to_int4pack_for_cpu(q, 2), _pack(q, layout))
