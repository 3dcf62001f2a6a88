"""Which dtype and quantization decode fastest on this CPU, and on the CPUs oneDNN can pretend to be.

    .venv/bin/python bench/cpu_dtype.py                     # the packaged SmolLM2-135M Q4_1 GGUF
    .venv/bin/python bench/cpu_dtype.py --checkpoint DIR    # any checkpoint

Each (CPU, dtype, quant) runs in its own process with one thread and reports CPU seconds per token (process
time, not wall time): on a shared 2-core machine the wall clock measures the neighbours, while one thread's CPU
time measures the work (no OpenMP worker spinning either). "CPUs": this one as it is, and capped through the
environment torch's libraries read at start: ONEDNN_MAX_CPU_ISA=AVX512_CORE is an AVX-512 CPU without bf16 or
VNNI (the issue-20 machine: oneDNN emulates bf16 there), and AVX2 caps ATen, oneDNN and MKL alike. Ratios are
within one run. Writes bench/results/cpu_dtype.json and prints a table with the CPU flags.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))

CPUS: dict[str, dict[str, str]] = {
    "native": {},
    "avx512-no-bf16": {"ONEDNN_MAX_CPU_ISA": "AVX512_CORE"},
    "avx2": {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"},
}
MODES = ("bfloat16:none", "float32:none", "bfloat16:int8", "float32:int8", "bfloat16:int4", "float32:int4")


def worker(source: str, dtype: str, quant: str, prompt: int, tokens: int) -> dict[str, Any]:
    import torch

    torch.set_num_threads(1)
    from smolgate.engine import cpu
    from smolgate.engine.engine import ChatMessage, Engine, GenerationParams, TextPart

    engine = Engine.load(source, dtype=dtype, quant=quant)
    msgs = [ChatMessage("user", [TextPart("Tell me a long story about a cat. " * (prompt // 9))])]
    params = GenerationParams(max_tokens=tokens)
    list(engine.stream(msgs, GenerationParams(max_tokens=4)))  # warm-up
    best: dict[str, float] = {}
    for _ in range(2):
        c0, first, n = time.process_time(), 0.0, 0
        for chunk in engine.stream(msgs, params):
            if n == 0:
                first = time.process_time()
            n += len(chunk.token_ids)
        c1 = time.process_time()
        prefill_s, decode_s = first - c0, (c1 - first) / max(1, n - 1)
        best["prefill_cpu_s"] = min(best.get("prefill_cpu_s", 1e9), prefill_s)
        best["decode_cpu_ms_per_token"] = min(best.get("decode_cpu_ms_per_token", 1e9), decode_s * 1000)
    engine.close()
    return {"features": cpu.detect().describe(), "tokens": n, **best}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", help="checkpoint dir or .gguf (default: the packaged SmolLM2-135M GGUF)")
    p.add_argument("--cpus", default=",".join(CPUS))
    p.add_argument("--modes", default=",".join(MODES), help="dtype:quant pairs")
    p.add_argument("--prompt-tokens", type=int, default=64)
    p.add_argument("--new-tokens", type=int, default=48)
    p.add_argument("--out", type=Path, default=HERE / "results" / "cpu_dtype.json")
    p.add_argument("--worker", nargs=4, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        source, dtype, quant, _ = args.worker
        print(json.dumps(worker(source, dtype, quant, args.prompt_tokens, args.new_tokens)))
        return
    from smolgate.engine.engine import packaged_gguf_path

    source = args.checkpoint or str(packaged_gguf_path())
    flags = sorted({f for f in Path("/proc/cpuinfo").read_text().split() if f.startswith(("avx", "amx"))})
    rows: list[dict[str, Any]] = []
    for cpu_name in args.cpus.split(","):
        for mode in args.modes.split(","):
            dtype, quant = mode.split(":")
            env = {**os.environ, **CPUS[cpu_name]}
            cmd = [sys.executable, __file__, "--prompt-tokens", str(args.prompt_tokens)]
            cmd += ["--new-tokens", str(args.new_tokens), "--worker", source, dtype, quant, "-"]
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
            row: dict[str, Any] = {"cpu": cpu_name, "dtype": dtype, "quant": quant}
            if proc.returncode == 0:
                row.update(json.loads(proc.stdout.splitlines()[-1]))
            else:
                row["error"] = proc.stderr.strip().splitlines()[-1:]
            rows.append(row)
            print(json.dumps(row), flush=True)
    report = {"source": source, "cpu_flags": flags, "load_avg": os.getloadavg(), "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))
    print(f"\nCPU flags: {' '.join(flags)}")
    print(f"{'cpu':16} {'dtype':9} {'quant':5} {'decode CPU ms/tok':>18} {'prefill CPU s':>14}")
    for r in rows:
        if "error" in r:
            print(f"{r['cpu']:16} {r['dtype']:9} {r['quant']:5} error: {r['error']}")
        else:
            print(
                f"{r['cpu']:16} {r['dtype']:9} {r['quant']:5} {r['decode_cpu_ms_per_token']:18.2f} "
                f"{r['prefill_cpu_s']:14.3f}"
            )


if __name__ == "__main__":
    main()
