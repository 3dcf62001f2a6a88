"""Weight-only kernel comparison at SmolVLM2 text-decoder shapes: tok/s-equivalent of one token step's linears.

For each model shape (2.2B, 500M, 256M text decoders) and row count M (1 = decode, 256 = a prefill chunk), every
kernel runs the 7 projections of a decoder layer; the time per layer x num_layers gives tok/s = M / time (lm_head
excluded). Layer copies are cycled through, as many as the model has layers or just enough to hold 256 MB of fp32
weights, if fewer. That is one copy for 2.2B (268 MB fp32 a layer), whose quantized form (int4 34 MB, int8 67 MB)
then partly stays in cache: the 2.2B int4/int8 figures are faster than a real step, which streams every layer
from DRAM (int4 at one row: ~56 ms for the 24 layers here, 70.6 ms in the kernel in a profiled real step). Our
2-core bench VM reports a 480 MB L3, but reads slow down far below that size: summing 32 MB runs at ~50 GB/s,
128 MB and more at 28-33 GB/s. Kernels run round-robin so load changes hit all of them alike; compare ratios
within one run (shared 2-core machine).

    .venv/bin/python bench/quant_kernels.py [--rows 1,8,32,256] [--reps 5] [--no-compile]

Writes bench/results/quant_kernels.json and .png.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from smolgate.engine import malloc, quant

RESULTS = Path(__file__).parent / "results"
# name: (hidden, intermediate, heads, kv heads, head_dim, layers)
SHAPES = {
    "2.2B": (2048, 8192, 32, 32, 64, 24),
    "500M": (960, 2560, 15, 5, 64, 32),
    "256M": (576, 1536, 9, 3, 64, 30),
}
Kernel = Callable[[torch.Tensor], torch.Tensor]
Builder = Callable[[torch.Tensor], Kernel | None]  # fp32 weight [N, K] -> f(x [M, K] fp32) -> y; None: n/a


def layer_shapes(h: int, i: int, nh: int, kv: int, hd: int) -> list[tuple[int, int]]:
    return [(nh * hd, h), (kv * hd, h), (kv * hd, h), (h, nh * hd), (i, h), (i, h), (h, i)]


def dense(dtype: torch.dtype) -> Builder:
    def build(w: torch.Tensor) -> Kernel:
        wd = w.to(dtype)
        return lambda x: F.linear(x.to(dtype), wd)

    return build


def int8pack(dtype: torch.dtype) -> Builder:
    def build(w: torch.Tensor) -> Kernel:
        p = quant.quantize_linear_weight(w, "int8")
        assert isinstance(p, quant.PackedInt8)
        scales = p.scales.to(dtype)
        return lambda x: torch._weight_int8pack_mm(x.to(dtype), p.weight, scales)

    return build


def int4pack(group: int, dtype: torch.dtype) -> Builder:
    def build(w: torch.Tensor) -> Kernel | None:
        p = quant.quantize_linear_weight(w, "int4", group_size=group)
        if not isinstance(p, quant.PackedInt4):  # shape the kernel cannot take (e.g. K=576 with group 128)
            return None
        sz = p.scales_zeros.to(dtype)
        return lambda x: torch._weight_int4pack_mm_for_cpu(x.to(dtype), p.weight, group, sz)

    return build


def dynamic_int8(w: torch.Tensor) -> Kernel:
    """torch.ao dynamic quantization (fbgemm): int8 weights *and* per-tensor int8 activations."""
    p = quant.quantize_linear_weight(w, "int8")
    assert isinstance(p, quant.PackedInt8)
    scales = p.scales.double()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        qw = torch._make_per_channel_quantized_tensor(p.weight, scales, torch.zeros_like(scales).long(), 0)
        packed = torch.ops.quantized.linear_prepack(qw, None)
    return lambda x: torch.as_tensor(torch.ops.quantized.linear_dynamic(x, packed))


def quant_linear(mode: quant.QuantMode) -> Builder:
    """What the engine runs: QuantLinear picks the kernel (decode) or dequant + dense bf16 (prefill) by M."""

    def build(w: torch.Tensor) -> Kernel:
        return quant.QuantLinear(quant.quantize_linear_weight(w, mode), None, w.shape[1])

    return build


def dequant_dense(mode: quant.QuantMode) -> Builder:
    """The prefill path forced at every M: dequantize to bf16 and dense matmuls (QuantLinear.dense_matmul)."""

    def build(w: torch.Tensor) -> Kernel:
        layer = quant.QuantLinear(quant.quantize_linear_weight(w, mode), None, w.shape[1])
        return lambda x: layer.dense_matmul(x.to(torch.bfloat16))

    return build


def compiled_int8(w: torch.Tensor) -> Kernel:
    """torch.compile (inductor C++) of the int8 dequant-matmul, gpt-fast style."""
    p = quant.quantize_linear_weight(w, "int8")
    assert isinstance(p, quant.PackedInt8)
    torch._dynamo.config.recompile_limit = 64  # one graph per weight shape

    @torch.compile(dynamic=False)
    def f(x: torch.Tensor, q: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        return F.linear(x.to(torch.bfloat16), q.to(torch.bfloat16)) * s

    return lambda x: torch.as_tensor(f(x, p.weight, p.scales))


KERNELS: dict[str, Builder] = {
    "fp32 dense": dense(torch.float32),
    "bf16 dense": dense(torch.bfloat16),
    "int8pack bf16": int8pack(torch.bfloat16),
    "int8pack fp32": int8pack(torch.float32),
    "int4pack g32 bf16": int4pack(32, torch.bfloat16),
    "int4pack g32 fp32": int4pack(32, torch.float32),
    "int4pack g128 bf16": int4pack(128, torch.bfloat16),
    "dynamic int8 (ao)": dynamic_int8,
    "int8 dequant+bf16": dequant_dense("int8"),
    "int4 dequant+bf16": dequant_dense("int4"),
    "QuantLinear int8": quant_linear("int8"),
    "QuantLinear int4": quant_linear("int4"),
    "compiled int8 dequant": compiled_int8,
}
COMPILE_MAX_ROWS = 8  # inductor compiles per shape: keep it to decode shapes


def run(
    rows: list[int], reps: int, use_compile: bool, console: Console, models: list[str], only: list[str]
) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = []
    kernels = {k: b for k, b in KERNELS.items() if use_compile or not k.startswith("compiled")}
    kernels = {k: b for k, b in kernels.items() if not only or any(o in k for o in only)}
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("kernels", total=len(models) * len(rows) * reps)
        for model in models:
            h, i, nh, kv, hd, n_layers = SHAPES[model]
            shapes = layer_shapes(h, i, nh, kv, hd)
            fp32_bytes = 4 * sum(n * k for n, k in shapes)
            copies = min(
                n_layers, math.ceil(256e6 / fp32_bytes)
            )  # a model's worth of layers, at most 256 MB fp32
            torch.manual_seed(0)
            weights = [[torch.randn(n, k) * k**-0.5 for n, k in shapes] for _ in range(copies)]
            for m in rows:
                progress.update(task, description=f"{model} M={m}")
                active = {
                    k: b for k, b in kernels.items() if not k.startswith("compiled") or m <= COMPILE_MAX_ROWS
                }
                built: dict[str, list[list[Kernel]]] = {}
                for name, build in active.items():
                    maybe = [[build(w) for w in layer] for layer in weights]
                    if all(f is not None for layer in maybe for f in layer):
                        built[name] = [[f for f in layer if f is not None] for layer in maybe]
                xs = {k: torch.randn(m, k) for k in {k for _, k in shapes}}
                for fns in built.values():  # warm-up (and compile)
                    for f, (_, k) in zip(fns[0], shapes, strict=True):
                        f(xs[k])
                times: dict[str, list[float]] = {k: [] for k in built}
                for _ in range(reps):
                    for name, fns in built.items():
                        t0 = time.perf_counter()
                        for layer in fns:
                            for f, (_, k) in zip(layer, shapes, strict=True):
                                f(xs[k])
                        times[name].append((time.perf_counter() - t0) / copies)
                    progress.advance(task)
                for name, ts in times.items():
                    per_layer = statistics.median(ts)
                    results.append(
                        {
                            "model": model,
                            "rows": m,
                            "kernel": name,
                            "ms_per_layer": per_layer * 1e3,
                            "tok_s": m / (per_layer * n_layers),
                        }
                    )
                del built
    return results


def show(results: list[dict[str, Any]], rows: list[int], console: Console) -> None:
    for m in rows:
        table = Table(title=f"tok/s-equivalent of the decoder linears, M={m} (lm_head excluded)")
        table.add_column("kernel")
        for model in SHAPES:
            table.add_column(model, justify="right")
        for kernel in dict.fromkeys(str(r["kernel"]) for r in results if r["rows"] == m):
            cells = {str(r["model"]): r["tok_s"] for r in results if r["rows"] == m and r["kernel"] == kernel}
            table.add_row(kernel, *(f"{cells[s]:.1f}" if s in cells else "-" for s in SHAPES))
        console.print(table)


def plot(results: list[dict[str, Any]], rows: list[int], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(rows), 1, figsize=(11, 3.2 * len(rows)), squeeze=False)
    for ax, m in zip(axes[:, 0], rows, strict=True):
        kernels = list(dict.fromkeys(str(r["kernel"]) for r in results if r["rows"] == m))
        width = 0.8 / len(SHAPES)
        for j, model in enumerate(SHAPES):
            vals = {
                str(r["kernel"]): float(r["tok_s"]) for r in results if r["rows"] == m and r["model"] == model
            }
            ax.bar(
                [x + j * width for x in range(len(kernels))],
                [vals.get(k, 0) for k in kernels],
                width,
                label=model,
            )
        ax.set_xticks(
            [x + 0.4 - width / 2 for x in range(len(kernels))], kernels, rotation=30, ha="right", fontsize=7
        )
        ax.set_ylabel("tok/s (linears)")
        ax.set_yscale("log")
        ax.set_title(f"M = {m}")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", default="1,8,32,256", help="comma-separated row counts M")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--no-compile", action="store_true", help="skip the torch.compile kernel (slow to build)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument(
        "--models", default=",".join(SHAPES), help="comma-separated subset of " + ",".join(SHAPES)
    )
    ap.add_argument("--kernels", default="", help="comma-separated substrings of kernel names to run")
    ap.add_argument("--out", default="quant_kernels", help="result file stem under bench/results")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    malloc.serving()  # the engine's allocator settings: temporaries up to 32 MiB reuse heap memory
    rows = [int(r) for r in args.rows.split(",")]
    console = Console()
    load_before = os.getloadavg()[0]
    models = args.models.split(",")
    only = [k for k in args.kernels.split(",") if k]
    results = run(rows, args.reps, not args.no_compile, console, models, only)
    meta = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "torch": torch.__version__,
        "threads": args.threads,
        "loadavg_1m_before": load_before,
        "loadavg_1m_after": os.getloadavg()[0],
    }
    show(results, rows, console)
    console.print(
        f"load average (1 min) before/after: {meta['loadavg_1m_before']:.2f} / {meta['loadavg_1m_after']:.2f}"
    )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{args.out}.json").write_text(json.dumps({"meta": meta, "results": results}, indent=1))
    plot(results, rows, RESULTS / f"{args.out}.png")
    console.print(f"wrote {RESULTS / args.out}.json and .png")


if __name__ == "__main__":
    main()
