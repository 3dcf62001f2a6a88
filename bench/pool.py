"""Pool benchmark: what clients see through a fault mix, with and without the pool's retries.

A fault-injecting OpenAI fake (tests/fakes/fault_upstream.py) serves nine keys: two healthy, the others
429, 5xx, connection reset, slow first byte, dying mid-body, a request budget counting down, and a revoked
key. smolgate runs as its own process (`smolgate serve`, fresh for each scenario, so each starts cold and
meets every fault). Scenarios, same load each:

  direct          straight to the fake with a healthy key — the baseline latency
  gateway-clean   through smolgate, healthy keys only — the gateway's own added latency
  faults-1-try    through smolgate, fault mix, retry.attempts = 1 (the pool still routes around known-bad
                  accounts, but every failed attempt reaches the client)
  faults-retries  through smolgate, fault mix, retry.attempts = 8

    .venv/bin/python bench/pool.py [--requests 2000] [--rate 250]

Writes bench/results/pool.json and pool.png. "added" = scenario percentile minus direct percentile.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parents[1]

OUT = ROOT / "bench" / "results"
MIX = {
    "b-ok1": "ok",
    "b-ok2": "ok",
    "b-429": "429",
    "b-5xx": "5xx",
    "b-reset": "reset",
    "b-slow": "slow",
    "b-die": "die",
    "b-count": "countdown",
    "b-401": "401",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def config(base_url: str, keys: list[str], attempts: int) -> str:
    accounts = "".join(f"      - {{name: 'acct-{k[2:]}', api_key: {k}}}\n" for k in keys)
    return f"""providers:
  - name: mix
    protocol: openai
    base_url: {base_url}
    strategy: round_robin
    timeouts: {{connect: 1, first_byte: 0.25, idle: 2, total: 10}}
    breaker: {{failures: 2, cooldown: 1.0}}
    accounts:
{accounts}models:
  - name: bench
    targets: [{{provider: mix, model: gpt-fake}}]
retry: {{attempts: {attempts}, deadline: 30}}
"""


class Gateway:
    def __init__(self, cfg: str) -> None:
        self.port = free_port()
        fd, name = tempfile.mkstemp(suffix=".yaml")
        os.close(fd)
        self.cfg_path = Path(name)
        self.cfg_path.write_text(cfg)
        exe = Path(sys.executable).with_name("smolgate")
        self.proc = subprocess.Popen(
            [
                str(exe),
                "serve",
                "--config",
                str(self.cfg_path),
                "--port",
                str(self.port),
                "--log-level",
                "error",
            ],
            stdout=subprocess.DEVNULL,
        )
        end = time.monotonic() + 60
        while time.monotonic() < end and self.proc.poll() is None:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.05)
        raise RuntimeError("gateway did not start")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)
        self.cfg_path.unlink(missing_ok=True)


async def load(url: str, key: str | None, n: int, rate: float, warm: bool = True) -> dict:
    """Open loop at a fixed rate; latency from each request's *scheduled* send time (no coordinated
    omission), so a slow attempt that holds up the next ones shows up in the percentiles."""
    lat_ok: list[float] = []
    lat_all: list[float] = []
    errors: dict[str, int] = {}
    headers = {"authorization": f"Bearer {key}"} if key else {}
    conn = aiohttp.TCPConnector(limit=256)
    async with aiohttp.ClientSession(connector=conn, timeout=aiohttp.ClientTimeout(total=60)) as http:

        async def one(i: int, at: float) -> None:
            body = {
                "model": "bench" if key is None else "gpt-fake",
                "messages": [{"role": "user", "content": f"hello {i}"}],
            }
            await asyncio.sleep(max(0.0, at - time.perf_counter()))
            try:
                async with http.post(url + "/chat/completions", json=body, headers=headers) as r:
                    await r.read()
                    status = str(r.status)
            except aiohttp.ClientError as exc:
                status = type(exc).__name__
            dt = time.perf_counter() - at
            lat_all.append(dt)
            if status == "200":
                lat_ok.append(dt)
            else:
                errors[status] = errors.get(status, 0) + 1

        if warm:  # connections only; fault scenarios count from the first request (cold pool state)
            now = time.perf_counter()
            await asyncio.gather(*(one(i, now) for i in range(16)))
            lat_ok.clear()
            lat_all.clear()
            errors.clear()
        t0 = time.perf_counter() + 0.05
        await asyncio.gather(*(one(i, t0 + i / rate) for i in range(n)))
        wall = time.perf_counter() - t0
    return {
        "requests": n,
        "errors": errors,
        "error_rate": sum(errors.values()) / n,
        "rps": n / wall,
        "latency_ms": pct(lat_all),
        "latency_ok_ms": pct(lat_ok),
    }


def pct(xs: list[float]) -> dict[str, float]:
    if not xs:
        return {}
    xs = sorted(xs)
    return {f"p{q}": round(xs[min(len(xs) - 1, int(len(xs) * q / 100))] * 1000, 3) for q in (50, 90, 99)}


async def stats(base_url: str) -> dict[str, dict[str, int]]:
    async with aiohttp.ClientSession() as http, http.get(base_url[:-3] + "/_stats?reset=1") as r:
        return await r.json()


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--rate", type=float, default=250.0, help="requests per second (open loop)")
    args = ap.parse_args()
    results: dict[str, dict] = {}
    scenarios = [
        ("gateway-clean", ["b-ok1", "b-ok2"], 8),
        ("faults-1-try", list(MIX), 1),
        ("faults-retries", list(MIX), 8),
    ]
    # The fake runs in its own process, so neither the load generator nor smolgate shares its GIL.
    fake = subprocess.Popen(  # blocking start-up, before any load
        [sys.executable, "-m", "tests.fakes.fault_upstream", json.dumps(MIX), "1.0", "40"],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert fake.stdout is not None and fake.stdin is not None
    base_url = f"http://127.0.0.1:{int(fake.stdout.readline())}/v1"
    try:
        results["direct"] = await load(base_url, "b-ok1", args.requests, args.rate)
        for name, keys, attempts in scenarios:
            await stats(base_url)
            gw = Gateway(config(base_url, keys, attempts))
            try:
                results[name] = await load(
                    gw.url, None, args.requests, args.rate, warm=name == "gateway-clean"
                )
            finally:
                gw.stop()
            seen = await stats(base_url)
            results[name]["upstream_attempts"] = sum(s["requests"] for s in seen.values())
            results[name]["upstream_429s"] = sum(s["throttled"] for s in seen.values())
    finally:
        fake.stdin.close()
        fake.wait(10)
    base = results["direct"]["latency_ms"]
    for r in results.values():
        r["added_ms"] = {q: round(v - base[q], 3) for q, v in r.get("latency_ok_ms", {}).items()}
    OUT.mkdir(parents=True, exist_ok=True)
    meta = {
        "requests": args.requests,
        "rate": args.rate,
        "fault_mix": MIX,
        "note": "fresh gateway per scenario (cold pool state); fake upstream, gateway and load generator are "
        "three processes on the same 2 shared cores",
    }
    (OUT / "pool.json").write_text(json.dumps({"meta": meta, "results": results}, indent=2))
    for name, r in results.items():
        print(
            f"{name:15s} errors {r['error_rate'] * 100:6.2f}%  p50 {r['latency_ms'].get('p50', 0):8.2f} ms  "
            f"p99 {r['latency_ms'].get('p99', 0):8.2f} ms  added p50 {r['added_ms'].get('p50', 0):7.2f} ms  "
            f"rps {r['rps']:7.1f}  {r['errors']}"
        )
    plot(results)


def plot(results: dict[str, dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results)
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4))
    a1.bar(names, [results[n]["error_rate"] * 100 for n in names], color="tab:red")
    a1.set_ylabel("client-visible errors (%)")
    a1.set_title("error rate through the fault mix")
    width = 0.27
    for i, q in enumerate(("p50", "p90", "p99")):
        a2.bar(
            [x + (i - 1) * width for x in range(len(names))],
            [results[n]["latency_ms"].get(q, 0) for n in names],
            width,
            label=q,
        )
    a2.set_xticks(range(len(names)), names)
    a2.set_yscale("log")
    a2.set_ylabel("latency, all requests (ms)")
    a2.set_title("latency")
    a2.legend()
    for ax in (a1, a2):
        ax.tick_params(axis="x", labelrotation=15)
    fig.tight_layout()
    fig.savefig(OUT / "pool.png", dpi=110)


if __name__ == "__main__":
    asyncio.run(main())
