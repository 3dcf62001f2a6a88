"""The synthetic image task of the learning test: name the colour of a (noisy) solid image, one of four."""

from __future__ import annotations

import base64
import io
import json
import random
from pathlib import Path

import numpy as np
from PIL import Image

COLOURS = {"red": (220, 30, 30), "green": (30, 190, 40), "blue": (30, 50, 220), "yellow": (230, 220, 40)}
QUESTION = "What colour is this image?"


def image(colour: str, rng: random.Random) -> bytes:
    """A solid image of `colour`, its shade and size varied and pixel noise added (no two alike)."""
    w, h = rng.randint(40, 90), rng.randint(40, 90)
    base = np.array(COLOURS[colour], dtype=np.float32) + rng.uniform(-25, 25)
    noise = np.random.default_rng(rng.randint(0, 2**31)).normal(0, 12, (h, w, 3))
    pixels = np.clip(base + noise, 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


def record(colour: str, rng: random.Random) -> dict[str, object]:
    url = "data:image/png;base64," + base64.b64encode(image(colour, rng)).decode()
    return {
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "image_url", "image_url": {"url": url}},
                    {"type": "text", "text": QUESTION},
                ],
            },
            {"role": "assistant", "content": colour},
        ]
    }


def write_dataset(path: Path, per_colour: int, seed: int) -> list[tuple[bytes, str]]:
    """Write `per_colour` examples of each colour as JSONL -> nothing; held-out sets use `samples`."""
    rng = random.Random(seed)
    lines = [record(c, rng) for _ in range(per_colour) for c in COLOURS]
    rng.shuffle(lines)
    path.write_text("".join(json.dumps(r) + "\n" for r in lines))
    return []


def samples(per_colour: int, seed: int) -> list[tuple[bytes, str]]:
    rng = random.Random(seed)
    return [(image(c, rng), c) for _ in range(per_colour) for c in COLOURS]
