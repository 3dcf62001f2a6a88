"""What serving LoRA adapters costs: decode tokens/s of the packaged SmolLM2-135M (GGUF) alone, with one rank-16
adapter on every text projection, and a batch of 4 rows on 4 different adapters vs 4 base rows (ratios; the
machine is shared, so run it a few times). Writes JSON to stdout.

    PYTHONPATH=src python bench/lora_overhead.py [--dtype bfloat16]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
from pathlib import Path

import torch

from smolgate.engine.engine import ChatMessage, Engine, GenerationParams, TextPart, packaged_gguf_path
from smolgate.engine.lora.peft_format import write_adapter

TOKENS = 64


def random_adapter(engine: Engine, directory: Path, seed: int, r: int = 16) -> Path:
    gen = torch.Generator().manual_seed(seed)
    cfg = engine.model.cfg.text
    kv, hd = cfg.num_kv_heads * cfg.head_dim, cfg.hidden_size
    shapes = {"q_proj": (hd, hd), "k_proj": (kv, hd), "v_proj": (kv, hd), "o_proj": (hd, hd)}
    shapes |= {"gate_proj": (cfg.intermediate_size, hd), "up_proj": (cfg.intermediate_size, hd)}
    shapes["down_proj"] = (hd, cfg.intermediate_size)
    weights = {}
    for layer in range(cfg.num_layers):
        for name, (out, inp) in shapes.items():
            part = "self_attn" if name.endswith(("q_proj", "k_proj", "v_proj", "o_proj")) else "mlp"
            a, b = torch.randn(r, inp, generator=gen) * 0.01, torch.randn(out, r, generator=gen) * 0.01
            weights[f"model.layers.{layer}.{part}.{name}"] = (a, b)
    return write_adapter(directory, weights, r=r, alpha=16, base_model="bench")


def rate(engine: Engine, adapters: list[str | None]) -> float:
    """Tokens/s of len(adapters) concurrent greedy generations of TOKENS tokens each."""
    msgs = [ChatMessage("user", [TextPart("Tell me a long story about a lighthouse.")])]
    done: list[int] = []

    def one(adapter: str | None) -> None:
        params = GenerationParams(max_tokens=TOKENS, adapter=adapter, stop_token_ids=(), strict_length=False)
        done.append(engine.generate(msgs, params).completion_tokens)

    t0 = time.perf_counter()
    threads = [threading.Thread(target=one, args=(a,)) for a in adapters]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(done) / (time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    engine = Engine.load(str(packaged_gguf_path()), dtype=args.dtype)
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(4):
            engine.load_adapter(f"a{i}", random_adapter(engine, Path(tmp) / f"a{i}", i))
    rate(engine, [None])  # warm up
    cases = {
        "base x1": [None],
        "adapter x1": ["a0"],
        "base x4": [None] * 4,
        "4 adapters x4": ["a0", "a1", "a2", "a3"],
    }
    best = {name: max(rate(engine, rows) for _ in range(args.repeat)) for name, rows in cases.items()}
    print(json.dumps({
        "dtype": args.dtype, "tok_s": best,
        "adapter_vs_base_x1": best["adapter x1"] / best["base x1"],
        "mixed_vs_base_x4": best["4 adapters x4"] / best["base x4"],
    }, indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
