"""The default `smolgate serve` against llama.cpp's server on the same GGUF file, both through HTTP (#20 §1).

Both serve the packaged SmolLM2-135M-Instruct Q4_1 file: smolgate as a user starts it (no config: `--dtype auto
--quant auto`), llama.cpp as llama-cpp-python's OpenAI-compatible server (`python -m llama_cpp.server`, built from
its PyPI sdist with -march=native into bench/.cache/llama-venv: bench/engine_llama.py) with 2 threads for decode
and prompt, as this machine has 2 cores. Each round streams one chat completion from each server in turn (greedy,
`max_tokens` 128, a prompt that asks for a long answer), reading the SSE stream as a client does. Every request
opens with its own system line ("Session N."): llama-cpp-python's server keeps the last prompt's KV cache and
evaluates only what differs, so with one fixed prompt its TTFT measured a cache hit (~4 ms for this prompt),
not a prefill. smolgate keeps no prompt cache.

  ttft_s        request sent -> first content chunk
  decode_tok_s  (completion tokens - 1) / (last chunk - first chunk), tokens from the final usage (or, where a
                server sends none, its content chunks: one token each)
  total_s       request sent -> stream closed

Medians over `--rounds` (after one warm-up request each); the ratio is smolgate ÷ llama.cpp, in one run. smolgate
compiles its decode step in the background by default: rounds start once the compiled step is in use (the
server's steady state; `compile_s` records how long the switch took). `--compile off` measures the eager step.

    .venv/bin/python bench/serve_vs_llama.py [--rounds 7] [--compile off]
    (or: smolgate bench engine --http [--rounds 7])

Writes bench/results/serve_vs_llama.json.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "src"))

from engine_llama import build_env, llama_python  # noqa: E402
from startup import cpu_flags, free_port  # noqa: E402

from smolgate.engine.engine import packaged_gguf_path  # noqa: E402

PROMPT = "Write a long, detailed story about a lighthouse keeper who finds a message in a bottle."
MAX_TOKENS = 128


class _Log:
    def __init__(self) -> None:
        self.compiled = threading.Event()
        self.compile_s = float("nan")


def read_log(proc: subprocess.Popen[str]) -> _Log:
    """Drain the server's log (so it never blocks on a full pipe), noting when the compiled step is in use."""
    log = _Log()

    def run() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            if "compiled decode step is in use" in line:
                if m := re.search(r"compiled in (\d+) s", line):
                    log.compile_s = float(m.group(1))
                log.compiled.set()

    threading.Thread(target=run, daemon=True).start()
    return log


def llama_server_python() -> Path:
    """The llama venv's python (engine_llama.py builds it) with the server's own dependencies added if missing."""
    py = llama_python()
    probe = [str(py), "-c", "import llama_cpp.server.app"]
    if subprocess.run(probe, capture_output=True, check=False).returncode != 0:
        extras = ["fastapi", "uvicorn", "sse-starlette", "starlette-context", "pydantic-settings"]
        subprocess.run([str(py), "-m", "pip", "install", "-q", *extras], check=True)
    return py


def wait_ready(url: str, proc: subprocess.Popen[Any], timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited ({proc.returncode})")
        try:
            if httpx.get(url + "/v1/models", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up in {timeout} s")


def stream_once(url: str, model: str, session: str) -> dict[str, float]:
    """One streamed answer; `session` opens the prompt so that no server reuses an earlier request's prefill."""
    messages = [
        {"role": "system", "content": f"Session {session}. You are a helpful assistant."},
        {"role": "user", "content": PROMPT},
    ]
    body = {
        "model": model,
        "stream": True,
        "stream_options": {"include_usage": True},
        "temperature": 0,
        "max_tokens": MAX_TOKENS,
        "messages": messages,
    }
    t0 = time.perf_counter()
    first = last = None
    tokens = chunks = 0
    with httpx.stream("POST", url + "/v1/chat/completions", json=body, timeout=600) as r:
        r.raise_for_status()
        for line in r.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            event = json.loads(line[6:])
            if event.get("usage"):
                tokens = event["usage"]["completion_tokens"]
            for choice in event.get("choices") or []:
                if (choice.get("delta") or {}).get("content"):
                    chunks += 1
                    now = time.perf_counter()
                    first = first or now
                    last = now
    end = time.perf_counter()
    tokens = tokens or chunks  # a server without stream usage: one token per chunk, as both stream
    if first is None or last is None or tokens < 2:
        raise RuntimeError(f"{url}: no streamed answer")
    return {
        "ttft_s": first - t0,
        "decode_tok_s": (tokens - 1) / (last - first),
        "total_s": end - t0,
        "completion_tokens": tokens,
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument(
        "--compile",
        choices=("background", "off"),
        default="background",
        help="smolgate's `--compile` (default background: rounds start once its compiled step is in use)",
    )
    args = ap.parse_args(argv)
    gguf = packaged_gguf_path()
    llama_py = llama_server_python()
    ports = free_port(), free_port()
    urls = {"smolgate": f"http://127.0.0.1:{ports[0]}", "llama.cpp": f"http://127.0.0.1:{ports[1]}"}
    models = {"smolgate": "default", "llama.cpp": gguf.name}
    with tempfile.TemporaryDirectory(prefix="smolgate-bench-") as home:
        env = {**os.environ, "SMOLGATE_HOME": home, "COLUMNS": "400"}  # one log record a line
        serve = [
            sys.executable,
            "-m",
            "smolgate.cli",
            "serve",
            "--port",
            str(ports[0]),
            "--log-level",
            "info",
            "--compile",
            args.compile,
        ]
        procs = {
            "smolgate": subprocess.Popen(serve, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True),
            "llama.cpp": subprocess.Popen(
                [str(llama_py), "-m", "llama_cpp.server", "--model", str(gguf), "--model_alias", gguf.name,
                 "--host", "127.0.0.1", "--port", str(ports[1]), "--n_threads", "2", "--n_threads_batch", "2",
                 "--n_ctx", "2048"],
                env={**os.environ, **build_env()},
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            ),
        }  # fmt: skip
        log = read_log(procs["smolgate"])
        try:
            for name in procs:
                wait_ready(urls[name], procs[name])
                stream_once(urls[name], models[name], "warm-up")
            if args.compile == "background":
                print("waiting for smolgate's compiled decode step ...")
                if not log.compiled.wait(900):
                    raise RuntimeError("the compiled decode step was not in use after 900 s")
            runs: dict[str, list[dict[str, float]]] = {name: [] for name in procs}
            for i in range(args.rounds):
                for name in procs:
                    r = stream_once(urls[name], models[name], f"{i + 1}")
                    runs[name].append(r)
                    print(
                        f"round {i + 1} {name:9}: ttft {r['ttft_s'] * 1000:6.0f} ms, decode "
                        f"{r['decode_tok_s']:6.1f} tok/s, {r['completion_tokens']} tokens, {r['total_s']:.2f} s"
                    )
        finally:
            for p in procs.values():
                p.terminate()
                p.wait(30)
    summary: dict[str, Any] = {
        "cpu_flags": cpu_flags(),
        "load_average": os.getloadavg()[0],
        "smolgate_compile": args.compile,
        "compile_s": log.compile_s,
        "runs": runs,
    }
    for metric in ("ttft_s", "decode_tok_s", "total_s"):
        med = {name: statistics.median(r[metric] for r in rs) for name, rs in runs.items()}
        summary[metric] = med
        summary[f"{metric}_ratio"] = med["smolgate"] / med["llama.cpp"]
        print(f"{metric}: smolgate {med['smolgate']:.3f}, llama.cpp {med['llama.cpp']:.3f}, "
              f"ratio {summary[f'{metric}_ratio']:.2f}")  # fmt: skip
    out = HERE / "results" / f"serve_vs_llama{'-eager' if args.compile == 'off' else ''}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(summary, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
