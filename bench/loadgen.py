"""Load generator for bench/gateway.py: an open-loop fixed-rate run and a closed-loop max-RPS run.

Latency is measured from the *scheduled* send time (no coordinated omission) to the last body byte.
Run as its own process (pinned by the caller): python bench/loadgen.py URL BODY_FILE HEADERS_JSON MODE ARG SECONDS
prints one JSON line.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

import aiohttp


async def fixed_rate(url: str, body: bytes, headers: dict[str, str], rate: float, seconds: float) -> dict:
    lat: list[float] = []
    errors = 0
    conn = aiohttp.TCPConnector(limit=256, keepalive_timeout=60)
    async with aiohttp.ClientSession(connector=conn) as s:

        async def one(at: float) -> None:
            nonlocal errors
            try:
                async with s.post(url, data=body, headers=headers) as r:
                    await r.read()
                    if r.status != 200:
                        errors += 1
                        return
                lat.append(time.perf_counter() - at)
            except aiohttp.ClientError:
                errors += 1

        # warm the connection pool first, so the run measures steady state
        await asyncio.gather(*(one(time.perf_counter()) for _ in range(32)))
        lat.clear()
        n = int(rate * seconds)
        t0 = time.perf_counter() + 0.05
        tasks = []
        for i in range(n):
            at = t0 + i / rate
            delay = at - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.ensure_future(one(at)))
        await asyncio.gather(*tasks)
    return {"latencies_ms": [x * 1000 for x in lat], "errors": errors, "sent": n}


async def max_rps(url: str, body: bytes, headers: dict[str, str], concurrency: int, seconds: float) -> dict:
    done = 0
    errors = 0
    conn = aiohttp.TCPConnector(limit=concurrency, keepalive_timeout=60)
    async with aiohttp.ClientSession(connector=conn) as s:
        stop_at = time.perf_counter() + seconds

        async def worker() -> None:
            nonlocal done, errors
            while time.perf_counter() < stop_at:
                try:
                    async with s.post(url, data=body, headers=headers) as r:
                        await r.read()
                        if r.status == 200:
                            done += 1
                        else:
                            errors += 1
                except aiohttp.ClientError:
                    errors += 1

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - t0
    return {"rps": done / elapsed, "errors": errors, "done": done}


def main() -> None:
    url, body_file, headers_json, mode, arg, seconds = sys.argv[1:7]
    body = open(body_file, "rb").read()
    headers = json.loads(headers_json)
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    if mode == "rate":
        out = asyncio.run(fixed_rate(url, body, headers, float(arg), float(seconds)))
    else:
        out = asyncio.run(max_rps(url, body, headers, int(arg), float(seconds)))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
