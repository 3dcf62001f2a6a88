"""llama.cpp side of the engine benchmark; runs with bench/.cache/llama-venv's python (llama-cpp-python, no torch).

    python engine_llama_worker.py quantize SRC.gguf DST.gguf Q8_0|Q4_K_M
    python engine_llama_worker.py bench SPEC.json OUT.json

`bench` measures what bench/engine_worker.py measures for text (same prompt token ids, passed in SPEC): prefill
tok/s (prompt eval of a fresh context), decode tok/s ((n-1) / time between the first and the n-th greedy token,
EOS ignored), aggregate tok/s of one stream (llama-cpp-python's `Llama` serves one sequence at a time) and peak
RSS (the GGUF is mmapped: touched pages count). Vision is not measured here (no mmproj for these weights).
"""

from __future__ import annotations

import ctypes
import json
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import llama_cpp


def step(text: str) -> None:
    print(f"@@step {text}", file=sys.stderr, flush=True)


def quantize(src: str, dst: str, kind: str) -> None:
    ftype = {"Q8_0": llama_cpp.LLAMA_FTYPE_MOSTLY_Q8_0, "Q4_K_M": llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_K_M}[kind]
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftype
    params.nthread = 2
    rc = llama_cpp.llama_model_quantize(src.encode(), dst.encode(), ctypes.byref(params))
    if rc != 0:
        raise SystemExit(f"llama_model_quantize failed ({rc})")


def bench(spec: dict[str, Any]) -> dict[str, Any]:
    threads = int(spec.get("threads", 2))
    step("load")
    if not spec.get("extra_bufts", True):  # see engine_llama.extra_bufts_ok
        default_params = llama_cpp.llama_model_default_params

        def no_extra_bufts() -> Any:
            params = default_params()
            params.use_extra_bufts = False
            return params

        llama_cpp.llama_model_default_params = no_extra_bufts
        llama_cpp.llama.llama_cpp.llama_model_default_params = no_extra_bufts
    t0 = time.perf_counter()
    llm = llama_cpp.Llama(
        model_path=spec["gguf"],
        n_ctx=int(spec.get("n_ctx", 2048)),
        n_batch=512,
        n_threads=threads,
        n_threads_batch=threads,
        verbose=False,
    )
    result: dict[str, Any] = {
        "load_s": time.perf_counter() - t0,
        "errors": {},
        "extra_bufts": bool(spec.get("extra_bufts", True)),
    }
    ids: list[int] = spec["prompt_ids"]
    result["prompt_tokens"] = len(ids)

    def greedy(prompt: list[int], n: int) -> list[float]:
        llm.reset()
        stamps = []
        for _tok in llm.generate(prompt, top_k=1, top_p=1.0, min_p=0.0, temp=0.0, reset=True):
            stamps.append(time.perf_counter())
            if len(stamps) >= n:
                break
        return stamps

    step("warm-up")
    greedy(ids[:16], 4)
    step("prefill")
    best = None
    for _ in range(int(spec["repeats"])):
        llm.reset()
        t0 = time.perf_counter()
        llm.eval(ids)
        dt = time.perf_counter() - t0
        best = dt if best is None else min(best, dt)
    result["prefill_s"] = best
    result["prefill_tok_s"] = len(ids) / best if best else None
    step(f"decode {spec['new_tokens']} tokens")
    runs = []  # median of `repeats` runs, as the engine worker
    for _ in range(int(spec["repeats"])):
        stamps = greedy(ids, int(spec["new_tokens"]))
        runs.append((len(stamps) - 1, stamps[-1] - stamps[0]))
    result["decode_tok_s_runs"] = [n / s for n, s in runs]
    result["decode_tokens"], result["decode_s"] = sorted(runs, key=lambda d: d[0] / d[1])[len(runs) // 2]
    result["decode_tok_s"] = statistics.median(result["decode_tok_s_runs"])
    step("1 stream")
    sids: list[int] = spec["stream_prompt_ids"]
    n = int(spec["stream_tokens"])
    t0 = time.perf_counter()
    got = greedy(sids, n)
    dt = time.perf_counter() - t0
    result["streams"] = {"1": {"tokens": len(got), "seconds": dt, "tok_s": len(got) / dt}}
    result["concurrency"] = "one sequence (llama-cpp-python Llama is not concurrent)"
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result["llama_cpp_version"] = getattr(llama_cpp, "__version__", "?")
    return result


def main() -> None:
    if sys.argv[1] == "quantize":
        quantize(sys.argv[2], sys.argv[3], sys.argv[4])
    elif sys.argv[1] == "bench":
        out = bench(json.loads(Path(sys.argv[2]).read_text()))
        Path(sys.argv[3]).write_text(json.dumps(out))
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main()
