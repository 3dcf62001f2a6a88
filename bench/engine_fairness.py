"""`smolgate bench engine --fairness`: the local model under load, through the HTTP server (#20 §2).

    .venv/bin/python bench/engine.py --fairness                       # the packaged SmolLM2-135M GGUF
    .venv/bin/python bench/engine.py --fairness --step-tokens 256,100000 --long-tokens 7800

For each `step_tokens` value a `smolgate serve` subprocess runs the model (OpenAI chat, streamed) and this measures:
  short_alone_ttft_s   a 20-token prompt's time to first token with nothing else running (median of --repeats)
  short_loaded_ttft_s  the same request sent while a ~8k-token prompt is being prefilled (median over --repeats
                       rounds, each a new long prompt), while one stream is decoding
  ttft_ratio           loaded / alone: target <= 3
  max_gap_s            the longest pause between two chunks of the running stream while the long prompt was
                       prefilled: target <= 1 s
  long_ttft_s          the long prompt's own time to first token (what fairness costs it)
A `step_tokens` larger than the long prompt prefills it in one pass: the behaviour before chunking. Wall-clock
figures on a shared machine are noisy; the ratio inside one run is the figure to compare.
Writes bench/results/engine-fairness.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import math
import os
import platform
import random
import re
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
WORDS = (
    "river stone garden window morning silver engine paper market forest signal orange pocket winter "
    "harbor candle ladder circle thunder meadow bridge copper falcon velvet marble island anchor"
).split()


def cpu_flags() -> list[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    return sorted(set(re.findall(r"\b(avx[\w]*|amx[\w]*)\b", text)))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def server(model: str, dtype: str, step_tokens: int, log: Path) -> Any:
    """A `smolgate serve` subprocess with one local provider; yields its base URL once the model is loaded."""
    port = free_port()
    cfg = Path(tempfile.mkdtemp()) / "smolgate.yaml"
    cfg.write_text(
        "providers:\n  - name: local\n    protocol: local\n"
        f"    model: {json.dumps(model)}\n    dtype: {dtype}\n    step_tokens: {step_tokens}\n"
        "models:\n  - name: m\n    targets: [{provider: local, model: default}]\n"
    )
    cmd = [sys.executable, "-m", "smolgate.cli", "serve", "--config", str(cfg), "--port", str(port)]
    offset = log.stat().st_size if log.exists() else 0
    env = {**os.environ, "COLUMNS": "400"}  # one log record a line
    with log.open("ab") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 600
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"smolgate serve exited ({proc.returncode}); see {log}")
            with contextlib.suppress(httpx.HTTPError):
                if any(m["id"] == "m" for m in httpx.get(url + "/v1/models", timeout=5).json()["data"]):
                    break
            if time.monotonic() > deadline:
                raise RuntimeError("smolgate serve did not load its model in 600 s")
            time.sleep(0.5)
        # the decode step compiles in the background (the default): measure the steady state, after the switch
        while b"compiled decode step is in use" not in log.read_bytes()[offset:]:
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError(f"the compiled decode step was not in use in 600 s; see {log}")
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        proc.wait(60)


def text_of(words: int, seed: int) -> str:
    rng = random.Random(seed)
    return " ".join(rng.choice(WORDS) for _ in range(words))


async def count_tokens(client: httpx.AsyncClient, text: str) -> int:
    r = await client.post(
        "/v1/messages/count_tokens", json={"model": "m", "messages": [{"role": "user", "content": text}]}
    )
    r.raise_for_status()
    return int(r.json()["input_tokens"])


async def prompt_of(client: httpx.AsyncClient, tokens: int, seed: int) -> str:
    """A user message of about `tokens` tokens (the chat template's own, with its default system prompt, come on
    top: the prompt_tokens figures in the report count them)."""
    overhead = await count_tokens(client, "")
    words = tokens
    for _ in range(5):
        text = text_of(words, seed)
        have = await count_tokens(client, text) - overhead
        if abs(have - tokens) <= max(1, tokens // 200):
            break
        words = max(1, round(words * tokens / have))
    return text


async def stream(
    client: httpx.AsyncClient, text: str, max_tokens: int, marks: list[float] | None = None
) -> float:
    """Stream one chat completion -> seconds to its first content chunk; `marks` gets every chunk's arrival."""
    body = {
        "model": "m",
        "stream": True,
        "max_tokens": max_tokens,
        "temperature": 0,
        "messages": [{"role": "user", "content": text}],
    }
    t0 = time.perf_counter()
    first = None
    async with client.stream("POST", "/v1/chat/completions", json=body) as r:
        r.raise_for_status()
        async for line in r.aiter_lines():
            if not line.startswith("data: {"):
                continue
            delta = json.loads(line[6:])["choices"]
            if delta and delta[0]["delta"].get("content"):
                now = time.perf_counter()
                first = first if first is not None else now - t0
                if marks is not None:
                    marks.append(now)
    return first if first is not None else time.perf_counter() - t0


async def one_round(
    client: httpx.AsyncClient, long_text: str, short_text: str, delay: float
) -> dict[str, float]:
    """A stream decoding; a long prompt sent; after `delay`, the short request -> its TTFT, the stream's gaps."""
    marks: list[float] = []
    done = asyncio.Event()

    async def runner() -> None:  # one stream decoding throughout (a new one whenever one ends)
        seed = 0
        while not done.is_set():
            seed += 1
            await stream(client, text_of(12, 1000 + seed) + " Tell a long story.", 2000, marks)
            marks.append(float("nan"))  # a stream boundary: no gap across it

    task = asyncio.create_task(runner())
    while not marks:
        await asyncio.sleep(0.01)
    t_long = time.perf_counter()
    long_task = asyncio.create_task(stream(client, long_text, 1))
    await asyncio.sleep(delay)
    long_started = not long_task.done()
    short_ttft = await stream(client, short_text, 1)
    long_ttft = await long_task
    t_end = t_long + long_ttft
    done.set()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, httpx.HTTPError):
        await task
    # the running stream's chunks from the last one before the long prompt came to the long prompt's first token
    start = max(0, next((i for i, t in enumerate(marks) if t >= t_long), len(marks)) - 1)
    window = [
        t for t in marks[start:] if math.isnan(t) or t <= t_end
    ]  # nan: a stream boundary, no gap across
    gaps = [b - a for a, b in itertools.pairwise(window) if not (math.isnan(a) or math.isnan(b))]
    return {
        "short_loaded_ttft_s": short_ttft,
        "max_gap_s": max(gaps, default=float("nan")),
        "long_ttft_s": long_ttft,
        "short_sent_during_prefill": float(long_started),
    }


async def measure(url: str, args: argparse.Namespace) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=url, timeout=3600) as client:
        short_text = await prompt_of(client, args.short_tokens, 7)
        alone = [await stream(client, short_text, 1) for _ in range(args.repeats + 1)][1:]  # first: warm-up
        rounds = []
        for i in range(args.repeats):
            long_text = await prompt_of(client, args.long_tokens, 100 + i)
            rounds.append(await one_round(client, long_text, short_text, args.delay))
        long_tokens = await count_tokens(client, long_text)
        short_tokens = await count_tokens(client, short_text)
    loaded = statistics.median(r["short_loaded_ttft_s"] for r in rounds)
    alone_s = statistics.median(alone)
    return {
        "long_prompt_tokens": long_tokens,
        "short_prompt_tokens": short_tokens,
        "short_alone_ttft_s": alone_s,
        "short_loaded_ttft_s": loaded,
        "ttft_ratio": loaded / alone_s,
        "max_gap_s": max(r["max_gap_s"] for r in rounds),
        "long_ttft_s": statistics.median(r["long_ttft_s"] for r in rounds),
        "rounds": rounds,
        "alone": alone,
    }


def main(argv: list[str]) -> dict[str, Any]:
    p = argparse.ArgumentParser(prog="smolgate bench engine --fairness", description=__doc__.split("\n\n")[0])
    p.add_argument("--fairness", action="store_true")
    p.add_argument("--checkpoint", help="model (dir or .gguf); default: the packaged SmolLM2-135M GGUF")
    p.add_argument("--dtype", default="bfloat16", choices=("bfloat16", "float32"))
    p.add_argument(
        "--step-tokens", default="256", help="comma-separated Limits.step_tokens values to compare"
    )
    p.add_argument("--long-tokens", type=int, default=7800)
    p.add_argument("--short-tokens", type=int, default=20)
    p.add_argument(
        "--delay", type=float, default=1.0, help="seconds into the long prefill the short one arrives"
    )
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    if args.checkpoint is None:
        sys.path.insert(0, str(HERE.parent / "src"))
        from smolgate.engine.engine import packaged_gguf_path

        args.checkpoint = str(packaged_gguf_path())
    args.out.mkdir(parents=True, exist_ok=True)
    log = args.out / "engine-fairness-server.log"
    report: dict[str, Any] = {
        "model": args.checkpoint,
        "dtype": args.dtype,
        "cpu_flags": cpu_flags(),
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "load_average_before": os.getloadavg()[0],
        "runs": {},
    }
    for step in [int(s) for s in args.step_tokens.split(",") if s]:
        with server(args.checkpoint, args.dtype, step, log) as url:
            row = asyncio.run(measure(url, args))
        report["runs"][str(step)] = row
        print(
            f"step_tokens={step}: short alone {row['short_alone_ttft_s']:.2f}s, during an "
            f"{row['long_prompt_tokens']}-token prefill {row['short_loaded_ttft_s']:.2f}s "
            f"(x{row['ttft_ratio']:.2f}, target <= 3); running stream's longest pause {row['max_gap_s']:.2f}s "
            f"(target <= 1 s); long prompt's TTFT {row['long_ttft_s']:.1f}s",
            flush=True,
        )
    report["load_average_after"] = os.getloadavg()[0]
    (args.out / "engine-fairness.json").write_text(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main(sys.argv[1:])
