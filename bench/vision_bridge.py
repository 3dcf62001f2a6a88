"""The vision bridge's latency per image: cold (the local VLM describes it) vs cached (the same bytes again).

    .venv/bin/python bench/vision_bridge.py                       # tiny random SmolVLM2 (the tests' model)
    .venv/bin/python bench/vision_bridge.py --shape 256m --shape 500m   # random weights of the real shapes

It runs the bridge as the dispatcher does (`VisionBridge.begin(...).shape(...)` for a target declared
`vision: false`) on a running Runtime, so a figure is the whole bridge: hashing, the cache lookup, the engine's
image preprocessing, prefill and `--max-tokens` greedy tokens (random weights rarely stop early: a real model's
shorter answers are faster). Cold: N distinct images, one request each; cached: the same N again. Writes
bench/results/vision_bridge.json. Timings vary with the machine's load: compare cold and cached within a run.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO / "tests" / "engine"))


def checkpoint(shape: str, cache: Path) -> Path:
    if shape == "tiny":
        from checkpoints import make_checkpoint  # the tests' tiny SmolVLM2 (256M layout, shrunk)

        path, _ = make_checkpoint("smolvlm2-256m", cache / "tiny-smolvlm2")
        return Path(path)
    import engine_models

    dst = cache / f"smolvlm2-{shape}"
    if not (dst / engine_models.MARKER).exists():
        engine_models.build(shape, dst)
    return engine_models.one_tile_dir(dst)  # one 512 px tile per image: the screenshot-sized case


def images(n: int) -> list[bytes]:
    """n distinct 512×384 images with text in them (a screenshot's kind of content)."""
    from PIL import Image, ImageDraw

    out = []
    for i in range(n):
        img = Image.new("RGB", (512, 384), (240, 240, 240 - i))
        ImageDraw.Draw(img).text((20, 20 + i), f"error: line {i}: undefined name 'x{i}'", fill=(0, 0, 0))
        buf = io.BytesIO()
        img.save(buf, "PNG")
        out.append(buf.getvalue())
    return out


async def measure(ckpt: Path, n: int, max_tokens: int, dtype: str) -> dict[str, Any]:
    from smolgate.canonical import Image, Message, Request, Text
    from smolgate.config import parse_config
    from smolgate.routing import Route
    from smolgate.server.runtime import Runtime

    home = tempfile.mkdtemp(prefix="bench-bridge-")
    cfg = parse_config(
        f"providers:\n  - {{name: local, protocol: local, model: '{ckpt}', dtype: {dtype}}}\n"
        "  - {name: up, protocol: openai, base_url: 'http://127.0.0.1:9/v1'}\n"
        "models:\n  - {name: blind, targets: [{provider: up, model: m, vision: false}]}\n"
        f"vision_bridge: {{model: local, max_tokens: {max_tokens}}}\n"
        f"store: 'sqlite:///:memory:'\nledger: {{enabled: false}}\ndata_dir: '{home}'\n"
    )
    rt = Runtime(cfg)
    await rt.start()
    try:
        bridge, route = rt.dispatcher.vision, Route("up", "m")

        async def once(png: bytes) -> float:
            req = Request(
                model="blind", messages=[Message(role="user", content=[Image(data=png), Text(text="?")])]
            )
            t0 = time.perf_counter()
            out = await bridge.begin(req, time.monotonic() + 600).shape(req, route)
            dt = time.perf_counter() - t0
            assert isinstance(out.messages[0].content[0], Text)
            return dt

        pngs = images(n + 1)
        await once(pngs[-1])  # warm-up: first-call allocations, not the bridge
        cold = [await once(p) for p in pngs[:n]]
        cached = [await once(p) for p in pngs[:n]]
    finally:
        await rt.stop()
    return {
        "cold_ms_median": statistics.median(cold) * 1000,
        "cold_ms_min": min(cold) * 1000,
        "cached_ms_median": statistics.median(cached) * 1000,
        "cached_ms_min": min(cached) * 1000,
        "cold_over_cached": statistics.median(cold) / statistics.median(cached),
        "images": n,
    }


def cpu_flags() -> list[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    flags = next(
        (line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), []
    )
    return sorted(f for f in flags if f.startswith(("avx", "amx", "fma", "f16c")))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--shape", action="append", choices=["tiny", "256m", "500m"], help="repeatable; default tiny"
    )
    ap.add_argument("--images", type=int, default=5)
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float32"])
    ap.add_argument("--cache", type=Path, default=HERE / ".cache" / "ckpt")
    args = ap.parse_args()
    results: dict[str, Any] = {
        "cpu": platform.processor() or platform.machine(),
        "cpu_flags": cpu_flags(),
        "cores": os.cpu_count(),
        "load_average": os.getloadavg()[0],
        "max_tokens": args.max_tokens,
        "dtype": args.dtype,
        "shapes": {},
    }
    for shape in args.shape or ["tiny"]:
        r = asyncio.run(measure(checkpoint(shape, args.cache), args.images, args.max_tokens, args.dtype))
        results["shapes"][shape] = r
        print(
            f"{shape:>5}: cold {r['cold_ms_median']:8.1f} ms/image (min {r['cold_ms_min']:.1f}), "
            f"cached {r['cached_ms_median']:6.3f} ms/image — {r['cold_over_cached']:,.0f}x",
            flush=True,
        )
    out = HERE / "results" / "vision_bridge.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(f"cpu flags: {' '.join(results['cpu_flags'])}; load {results['load_average']:.2f}; wrote {out}")


if __name__ == "__main__":
    main()
