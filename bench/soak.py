"""Soak: many mixed requests through one gateway process, then the same under a slow-connection attack.

Phase 1 sends `--requests` requests (default 20,000) in five client protocols (OpenAI Chat, Responses,
Anthropic, Gemini, Ollama), streaming and not, to a gateway in front of the fast fake upstream, and reads the
gateway's RSS after a warm-up and at the end. Phase 2 holds `--slow` connections (default 1,000) open the way
an attacker would (request lines and headers trickled a byte at a time, reopened when the gateway drops them)
while the same mix runs again. Both phases must end with 0 failed requests; RSS may grow ≤ 5% over phase 1.

    .venv/bin/python bench/soak.py [--requests 20000] [--slow 1000] [--concurrency 32]

Bounded: every phase stops by itself. Writes bench/results/soak.json and soak.png.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import psutil
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gateway import PY, free_port, pinned, wait_port

HERE = Path(__file__).resolve().parent
console = Console()
KEY = "soak-client-key-0123456789"
HEADERS = {"authorization": f"Bearer {KEY}", "content-type": "application/json"}
USER = "Say hello to the soak test."


def _mix() -> list[tuple[str, str, dict, dict]]:
    """(name, path, body, extra headers) for each protocol × streaming."""
    out = []
    for stream in (False, True):
        s = " stream" if stream else ""
        out += [
            (
                "openai" + s,
                "/v1/chat/completions",
                {"model": "soak", "stream": stream, "messages": [{"role": "user", "content": USER}]},
                {},
            ),
            (
                "responses" + s,
                "/v1/responses",
                {"model": "soak", "stream": stream, "input": USER, "store": False},
                {},
            ),
            (
                "anthropic" + s,
                "/v1/messages",
                {
                    "model": "soak",
                    "stream": stream,
                    "max_tokens": 64,
                    "messages": [{"role": "user", "content": USER}],
                },
                {"anthropic-version": "2023-06-01"},
            ),
            (
                "gemini" + s,
                "/v1beta/models/soak:" + ("streamGenerateContent?alt=sse" if stream else "generateContent"),
                {"contents": [{"role": "user", "parts": [{"text": USER}]}]},
                {},
            ),
            (
                "ollama" + s,
                "/api/chat",
                {"model": "soak", "stream": stream, "messages": [{"role": "user", "content": USER}]},
                {},
            ),
        ]
    return out


async def run_mix(
    base: str, total: int, concurrency: int, progress: Progress, task, errors: list[str]
) -> int:  # type: ignore[no-untyped-def]
    mix = itertools.cycle(_mix())
    sent = 0
    ok = 0
    conn = aiohttp.TCPConnector(limit=concurrency, keepalive_timeout=30)
    async with aiohttp.ClientSession(connector=conn, timeout=aiohttp.ClientTimeout(total=60)) as s:

        async def worker() -> None:
            nonlocal sent, ok
            while sent < total:
                sent += 1
                name, path, body, extra = next(mix)
                try:
                    async with s.post(base + path, json=body, headers={**HEADERS, **extra}) as r:
                        data = await r.read()
                        if r.status != 200 or (b"error" in data and b'"error":null' not in data):
                            if len(errors) < 20:
                                errors.append(f"{name}: HTTP {r.status} {data[:200]!r}")
                            else:
                                errors.append("")
                        else:
                            ok += 1
                except (TimeoutError, aiohttp.ClientError) as exc:
                    errors.append(f"{name}: {type(exc).__name__}")
                progress.advance(task)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return ok


async def hold_slow(port: int, count: int, stop: asyncio.Event, stats: dict) -> None:
    """Keep `count` connections open, each trickling a never-finished request; reopen what the server drops."""

    async def one(i: int) -> None:
        while not stop.is_set():
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                stats["refused"] += 1
                await asyncio.sleep(0.5)
                continue
            stats["opened"] += 1
            head = f"POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1\r\nx-slow-{i}: ".encode()
            try:
                writer.write(head)
                while not stop.is_set():
                    await asyncio.sleep(1.0)
                    writer.write(b"a")
                    await writer.drain()
                    if reader.at_eof():
                        break
            except (OSError, ConnectionError):
                pass
            finally:
                if not stop.is_set():
                    stats["dropped"] += 1  # the gateway closed it (header timeout, limits)
                writer.close()

    await asyncio.gather(*(one(i) for i in range(count)))


def rss(proc: psutil.Process) -> int:
    return proc.memory_info().rss


async def soak(args: argparse.Namespace, port: int, gw: psutil.Process) -> dict:
    base = f"http://127.0.0.1:{port}"
    result: dict = {"requests": args.requests, "slow": args.slow}
    cols = (
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeRemainingColumn(),
    )
    with Progress(*cols, console=console) as progress:
        warm_errors: list[str] = []
        await run_mix(
            base, 2000, args.concurrency, progress, progress.add_task("warm-up", total=2000), warm_errors
        )
        rss0 = rss(gw)
        errors: list[str] = []
        t0 = time.perf_counter()
        ok = await run_mix(
            base,
            args.requests,
            args.concurrency,
            progress,
            progress.add_task("phase 1: mixed", total=args.requests),
            errors,
        )
        result["phase1"] = {
            "ok": ok,
            "failed": len(errors) + len(warm_errors),
            "seconds": time.perf_counter() - t0,
            "rss_start_mb": rss0 / 2**20,
            "rss_end_mb": rss(gw) / 2**20,
            "sample_errors": [e for e in warm_errors + errors if e][:10],
        }
        stop = asyncio.Event()
        stats = {"opened": 0, "dropped": 0, "refused": 0}
        holder = asyncio.ensure_future(hold_slow(port, args.slow, stop, stats))
        await asyncio.sleep(3)  # let the slow connections pile up
        errors2: list[str] = []
        t0 = time.perf_counter()
        ok2 = await run_mix(
            base,
            args.requests // 4,
            args.concurrency,
            progress,
            progress.add_task(f"phase 2: mixed + {args.slow} slow", total=args.requests // 4),
            errors2,
        )
        open_now = stats["opened"] - stats["dropped"]  # before we let go of them
        stop.set()
        await holder
        result["phase2"] = {
            "ok": ok2,
            "failed": len(errors2),
            "seconds": time.perf_counter() - t0,
            "slow_open_at_end": open_now,
            **stats,
            "rss_end_mb": rss(gw) / 2**20,
            "sample_errors": [e for e in errors2 if e][:10],
        }
    p1 = result["phase1"]
    result["rss_growth"] = p1["rss_end_mb"] / p1["rss_start_mb"] - 1
    return result


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=20000)
    ap.add_argument("--slow", type=int, default=1000)
    ap.add_argument("--concurrency", type=int, default=32)
    args = ap.parse_args()
    up_port, gw_port = free_port(), free_port()
    upstream = subprocess.Popen([PY, str(HERE / "fast_upstream.py"), str(up_port)], preexec_fn=pinned(1))
    cfg = tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False)
    cfg.write(
        f"providers:\n  - name: up\n    protocol: openai\n    base_url: http://127.0.0.1:{up_port}/v1\n"
        f"    accounts: [{{api_key: soak-upstream-key}}]\n"
        f"models:\n  - name: soak\n    targets: [{{provider: up, model: soak-upstream}}]\n"
        f"keys:\n  - {{key: {KEY}, name: soak}}\n"
    )
    cfg.close()
    gateway = subprocess.Popen(
        [
            PY,
            "-m",
            "smolgate.cli",
            "serve",
            "--config",
            cfg.name,
            "--port",
            str(gw_port),
            "--log-level",
            "warning",
        ],
        preexec_fn=pinned(0),
        env={**os.environ},
    )
    try:
        wait_port(up_port)
        wait_port(gw_port)
        result = asyncio.run(soak(args, gw_port, psutil.Process(gateway.pid)))
    finally:
        gateway.terminate()
        upstream.terminate()
        gateway.wait(10)
        upstream.wait(10)
        os.unlink(cfg.name)
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    (out / "soak.json").write_text(json.dumps(result, indent=2))
    p1, p2 = result["phase1"], result["phase2"]
    console.print(
        f"phase 1: {p1['ok']} ok, {p1['failed']} failed in {p1['seconds']:.1f}s; RSS "
        f"{p1['rss_start_mb']:.1f} → {p1['rss_end_mb']:.1f} MB ({result['rss_growth']:+.1%})"
    )
    console.print(
        f"phase 2: {p2['ok']} ok, {p2['failed']} failed in {p2['seconds']:.1f}s with {p2['slow_open_at_end']} "
        f"slow connections open (opened {p2['opened']}, dropped by the gateway {p2['dropped']}, "
        f"refused {p2['refused']})"
    )
    for e in p1["sample_errors"] + p2["sample_errors"]:
        console.print(f"  [red]{e}[/red]")
    plot(result, out / "soak.png")
    bad = p1["failed"] or p2["failed"] or result["rss_growth"] > 0.05
    sys.exit(1 if bad else 0)


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    p1, p2 = result["phase1"], result["phase2"]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    ax1.bar(
        ["phase 1", f"phase 2 (+{result['slow']} slow)"], [p1["ok"] / p1["seconds"], p2["ok"] / p2["seconds"]]
    )
    ax1.set_ylabel("successful requests / s")
    ax2.bar(
        ["RSS after warm-up", "RSS after phase 1", "RSS after phase 2"],
        [p1["rss_start_mb"], p1["rss_end_mb"], p2["rss_end_mb"]],
        color="tab:orange",
    )
    ax2.set_ylabel("gateway RSS (MB)")
    fig.suptitle(f"smolgate soak: {p1['failed'] + p2['failed']} failed requests")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
