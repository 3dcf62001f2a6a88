"""CPU cost per request of the gateway path, measured in-process (robust to a busy machine).

Drives the ASGI app directly (no HTTP server in front) against bench/fast_upstream.py in another
process and reports CPU µs per request; `--profile` adds a cProfile table of the hottest functions.

    .venv/bin/python bench/profile_gateway.py [--path /v1/messages] [--stream] [--profile]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import subprocess
import sys
import time
from pathlib import Path

import orjson

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from gateway import free_port, wait_port  # noqa: E402

from smolgate.config import parse_config  # noqa: E402
from smolgate.server.app import Gateway  # noqa: E402


def body_for(path: str, stream: bool) -> bytes:
    if path == "/v1/messages":
        return orjson.dumps(
            {
                "model": "bench",
                "max_tokens": 64,
                "stream": stream,
                "system": "Be brief.",
                "messages": [{"role": "user", "content": "Say hello"}],
            }
        )
    return orjson.dumps(
        {
            "model": "bench",
            "stream": stream,
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Say hello"},
            ],
        }
    )


async def run(args: argparse.Namespace, port: int) -> None:
    cfg = parse_config(
        f"providers:\n  - name: up\n    protocol: openai\n    base_url: http://127.0.0.1:{port}/v1\n"
        f"    accounts: [{{api_key: k}}]\nmodels:\n  - name: bench\n    targets: [{{provider: up, model: m}}]\n"
    )
    gw = Gateway(cfg)
    await gw.runtime.start()
    body = body_for(args.path, args.stream)
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"anthropic-version", b"2023-06-01"),
    ]
    never = asyncio.get_running_loop().create_future()

    async def one() -> None:
        scope = {
            "type": "http",
            "method": "POST",
            "path": args.path,
            "query_string": b"",
            "headers": headers,
            "client": ("127.0.0.1", 1),
        }
        state = {"sent": False}

        async def receive() -> dict:
            if not state["sent"]:
                state["sent"] = True
                return {"type": "http.request", "body": body, "more_body": False}
            await never
            return {"type": "http.disconnect"}

        async def send(msg: dict) -> None:
            pass

        await gw(scope, receive, send)

    for _ in range(200):
        await one()
    prof = cProfile.Profile() if args.profile else None
    t0, w0 = time.process_time(), time.perf_counter()
    if prof:
        prof.enable()
    for _ in range(args.n):
        await one()
    if prof:
        prof.disable()
    cpu = (time.process_time() - t0) / args.n * 1e6
    print(
        f"{args.path} stream={args.stream}: {cpu:.0f} µs CPU per request "
        f"(includes the aiohttp client side), wall {(time.perf_counter() - w0) / args.n * 1e6:.0f} µs"
    )
    if prof:
        pstats.Stats(prof).sort_stats("tottime").print_stats(args.top)
    await gw.runtime.stop()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--path", default="/v1/chat/completions")
    ap.add_argument("--stream", action="store_true")
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--n", type=int, default=3000)
    ap.add_argument("--top", type=int, default=25)
    args = ap.parse_args()
    port = free_port()
    up = subprocess.Popen([sys.executable, str(HERE / "fast_upstream.py"), str(port)])
    try:
        wait_port(port)
        try:
            import uvloop

            uvloop.install()
        except ImportError:
            pass
        asyncio.run(run(args, port))
    finally:
        up.terminate()


if __name__ == "__main__":
    main()
