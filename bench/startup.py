"""Start-up: `smolgate serve` with no config (the packaged SmolLM2-135M, `--dtype auto --quant auto`) from the
command to its first answer, as a user starts it.

For each run, in a fresh data dir: seconds until the port answers `/health`, until a first streamed chat answer's
first token, and until that answer is whole (16 tokens). The first run also gets a fresh inductor cache (the
engine compiles its int4 unpacking at load: a first start on a machine pays for it, later starts read the
cache), the others share one, as repeated starts on one machine do. Target (#20): serving within 15 s.

    .venv/bin/python bench/startup.py [--runs 3]

Writes bench/results/startup.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def cpu_flags() -> str:
    flags = set()
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("flags"):
            flags = {f for f in line.split(":", 1)[1].split() if f.startswith(("avx", "amx"))}
            break
    return " ".join(sorted(flags))


def one_start(inductor_cache: str) -> dict[str, float]:
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="smolgate-startup-") as home:
        env = {**os.environ, "SMOLGATE_HOME": home, "TORCHINDUCTOR_CACHE_DIR": inductor_cache}
        cmd = [sys.executable, "-m", "smolgate.cli", "serve", "--port", str(port), "--log-level", "warning"]
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        url = f"http://127.0.0.1:{port}"
        try:
            while True:
                try:
                    httpx.get(url + "/health", timeout=2)
                    break
                except httpx.HTTPError:
                    if proc.poll() is not None:
                        raise RuntimeError(proc.stderr.read() if proc.stderr else "serve exited") from None
                    if time.perf_counter() - t0 > 300:
                        raise RuntimeError("serve did not answer /health within 300 s") from None
                    time.sleep(0.05)
            health = time.perf_counter() - t0
            body = {
                "model": "default",
                "stream": True,
                "max_tokens": 16,
                "messages": [{"role": "user", "content": "Say hello."}],
            }
            first = None
            with httpx.stream("POST", url + "/v1/chat/completions", json=body, timeout=300) as r:
                r.raise_for_status()
                for line in r.iter_lines():
                    if first is None and '"content"' in line:
                        first = time.perf_counter() - t0
            whole = time.perf_counter() - t0
            return {"health_s": health, "first_token_s": first or whole, "answer_s": whole}
        finally:
            proc.terminate()
            proc.wait(30)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="smolgate-inductor-") as cache:
        for i in range(args.runs):
            run = one_start(cache)
            run["inductor_cache"] = "cold" if i == 0 else "warm"
            runs.append(run)
            print(
                f"run {i + 1} ({run['inductor_cache']} inductor cache): /health {run['health_s']:.1f} s, "
                f"first token {run['first_token_s']:.1f} s, answer {run['answer_s']:.1f} s"
            )
    warm = [r for r in runs if r["inductor_cache"] == "warm"]
    summary = {
        "cpu": platform.processor() or platform.machine(),
        "cpu_flags": cpu_flags(),
        "load_average_before": os.getloadavg()[0],
        "runs": runs,
        "warm_first_token_median_s": statistics.median(r["first_token_s"] for r in warm) if warm else None,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "startup.json").write_text(json.dumps(summary, indent=2))
    print(f"wrote {RESULTS / 'startup.json'}")


if __name__ == "__main__":
    main()
