"""One tree's `smolgate serve` (packaged GGUF): 8 concurrent streamed chat requests of 64 tokens, 3 waves; JSON."""

import asyncio
import json
import os
import socket
import subprocess
import sys
import time

import httpx

tree = sys.argv[1]
s = socket.socket()
s.bind(("127.0.0.1", 0))
port = s.getsockname()[1]
s.close()
env = {**os.environ, "PYTHONPATH": tree + "/src"}
proc = subprocess.Popen(
    [sys.executable, "-m", "smolgate.cli", "serve", "--port", str(port)],
    env=env,
    stdout=subprocess.DEVNULL,
    stderr=subprocess.DEVNULL,
)
url = f"http://127.0.0.1:{port}/v1/chat/completions"


async def one(c):
    t0 = time.perf_counter()
    ttft = None
    n = 0
    body = {
        "model": "default",
        "stream": True,
        "max_tokens": 64,
        "temperature": 0,
        "messages": [{"role": "user", "content": "Write a short story about a lighthouse keeper."}],
    }
    async with c.stream("POST", url, json=body) as r:
        async for line in r.aiter_lines():
            if line.startswith("data: {") and '"content"' in line:
                n += 1
                ttft = ttft or time.perf_counter() - t0
    return time.perf_counter() - t0, ttft, n


async def main():
    async with httpx.AsyncClient(timeout=120) as c:
        for _ in range(120):
            try:
                if (await c.get(f"http://127.0.0.1:{port}/health")).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.5)
        await one(c)
        out = []
        for _ in range(3):
            t0 = time.perf_counter()
            rs = await asyncio.gather(*(one(c) for _ in range(8)))
            out.append(
                {
                    "wall": time.perf_counter() - t0,
                    "ttft_max": max(r[1] for r in rs),
                    "chunks": sum(r[2] for r in rs),
                }
            )
    return out


try:
    res = asyncio.run(main())
    best = min(res, key=lambda r: r["wall"])
    print(
        json.dumps(
            {
                "tree": tree,
                "agg_chunks_per_s": best["chunks"] / best["wall"],
                "wall": best["wall"],
                "ttft_max": best["ttft_max"],
            }
        )
    )
finally:
    proc.terminate()
    proc.wait()
