"""Response-cache benchmark: a cache hit's latency against a miss through a fast fake upstream, in one run.

One `smolgate serve` subprocess (ledger, metrics and access log on, as deployed) in front of
bench/fast_upstream.py, with two aliases on that upstream: `cached` (cache on, every request) and `plain` (cache
off). A client sends sequential requests, whole and streamed, interleaved round by round so that drift on a
shared machine hits every case alike:
- plain: no cache at all (the baseline),
- miss: `cached` with a new prompt each time (the look-up, the upstream call, the store),
- hit: `cached` with one prompt seen before (the look-up and the replay, no upstream).
Medians and p90 per case, and the ratios hit/miss and miss/plain (what the cache costs a miss).

    .venv/bin/python bench/cache.py [--requests 400] [--backend memory|redis]

Writes bench/results/cache.json (and cache.png with matplotlib).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import httpx
from rich.console import Console
from rich.table import Table

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # tests.serve_process, tests.pool.conftest

from tests.serve_process import free_port, start_serve  # noqa: E402

console = Console()
PY = sys.executable
CASES = ("plain", "miss", "hit")


def wait_port(port: int) -> None:
    for _ in range(200):
        try:
            httpx.get(f"http://127.0.0.1:{port}/", timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.05)


def config(up_port: int, backend: str, state: str | None) -> str:
    up = f"http://127.0.0.1:{up_port}/v1"
    return (
        f"providers:\n  - {{name: fast, protocol: openai, base_url: '{up}', accounts: [{{api_key: sk-bench}}]}}\n"
        "models:\n"
        "  - {name: cached, targets: [{provider: fast, model: bench}], cache: {requests: all}}\n"
        "  - {name: plain, targets: [{provider: fast, model: bench}]}\n"
        f"cache: {{backend: {backend}, ttl: 3600}}\n" + (f"state: '{state}'\n" if state else "")
    )


def one(c: httpx.Client, model: str, prompt: str, stream: bool, expect: str | None = None) -> float:
    body = {"model": model, "messages": [{"role": "user", "content": prompt}], "stream": stream}
    t0 = time.perf_counter()
    if stream:
        with c.stream("POST", "/v1/chat/completions", json=body) as r:
            for _ in r.iter_bytes():
                pass
    else:
        r = c.post("/v1/chat/completions", json=body)
    assert r.status_code == 200, r.text
    assert r.headers.get("x-smolgate-cache") == expect, r.headers  # each case is what it says
    return (time.perf_counter() - t0) * 1000


def run(url: str, n: int) -> dict[str, dict[str, list[float]]]:
    times: dict[str, dict[str, list[float]]] = {m: {c: [] for c in CASES} for m in ("whole", "stream")}
    with httpx.Client(base_url=url, timeout=30) as c:
        for stream in (False, True):
            one(
                c, "cached", "the same question", stream, "hit" if stream else "miss"
            )  # warm: the entry exists
            one(c, "plain", "warm", stream)
        for _ in range(n):
            for stream in (False, True):
                mode = times["stream" if stream else "whole"]
                mode["plain"].append(one(c, "plain", uuid.uuid4().hex, stream))
                mode["miss"].append(one(c, "cached", uuid.uuid4().hex, stream, "miss"))
                mode["hit"].append(one(c, "cached", "the same question", stream, "hit"))
    return times


def summary(times: dict[str, dict[str, list[float]]]) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for mode, cases in times.items():
        med = {c: statistics.median(v) for c, v in cases.items()}
        p90 = {c: statistics.quantiles(v, n=10)[-1] for c, v in cases.items()}
        out[mode] = {
            **{f"{c}_median_ms": round(med[c], 3) for c in CASES},
            **{f"{c}_p90_ms": round(p90[c], 3) for c in CASES},
            "hit_over_miss": round(med["hit"] / med["miss"], 3),
            "miss_over_plain": round(med["miss"] / med["plain"], 3),
        }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--requests", type=int, default=400, help="rounds (each: every case, whole and streamed)")
    ap.add_argument("--backend", choices=("memory", "redis"), default="memory")
    args = ap.parse_args()
    up_port = free_port()
    upstream = subprocess.Popen([PY, str(HERE / "fast_upstream.py"), str(up_port)])
    redis_srv = None
    with tempfile.TemporaryDirectory() as tmp:
        try:
            wait_port(up_port)
            state = None
            if args.backend == "redis":
                from tests.pool.conftest import RedisServer

                redis_srv = RedisServer(Path(tmp)).start()
                state = redis_srv.url
            cfg = Path(tmp) / "cache.yaml"
            cfg.write_text(config(up_port, args.backend, state))
            env = {**os.environ, "SMOLGATE_HOME": tmp}
            proc, url = start_serve(cfg, env=env)
            assert proc.stdout is not None
            threading.Thread(target=proc.stdout.read, daemon=True).start()  # its log must not fill the pipe
            try:
                times = run(url, args.requests)
            finally:
                proc.terminate()
                proc.wait(20)
        finally:
            upstream.terminate()
            upstream.wait(10)
            if redis_srv is not None:
                redis_srv.stop()
    result = {"backend": args.backend, "requests": args.requests, **summary(times)}
    report(result)
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    (out / "cache.json").write_text(json.dumps(result, indent=2) + "\n")
    plot(result, out / "cache.png")


def report(r: dict) -> None:  # type: ignore[type-arg]
    t = Table(title=f"response cache ({r['backend']}), {r['requests']} rounds, median / p90 ms")
    for col in ("mode", *CASES, "hit/miss", "miss/plain"):
        t.add_column(col)
    for mode in ("whole", "stream"):
        m = r[mode]
        cells = [f"{m[f'{c}_median_ms']:.2f} / {m[f'{c}_p90_ms']:.2f}" for c in CASES]
        t.add_row(mode, *cells, f"{m['hit_over_miss']:.2f}", f"{m['miss_over_plain']:.2f}")
    console.print(t)


def plot(r: dict, path: Path) -> None:  # type: ignore[type-arg]
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    fig, ax = plt.subplots(figsize=(6, 3.5))
    width = 0.25
    for i, c in enumerate(CASES):
        ax.bar(
            [x + i * width for x in (0, 1)],
            [r[m][f"{c}_median_ms"] for m in ("whole", "stream")],
            width,
            label=c,
        )
    ax.set_xticks([width, 1 + width], ["whole", "stream"])
    ax.set_ylabel("median latency (ms)")
    ax.set_title(f"response cache ({r['backend']}): hit vs miss vs no cache")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)


if __name__ == "__main__":
    main()
