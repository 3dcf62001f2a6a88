"""Quantization accuracy on real weights: top-1 agreement and logits cosine against the fp32 engine.

Runs the packaged SmolLM2-135M-Instruct GGUF (or any checkpoint given) over a real text (this repository's README,
first N tokens) in one teacher-forced pass per mode, and compares every position's next-token logits with fp32.
This is the figure behind the default `--quant` choice (the issue's rule: best speed at top-1 >= 0.98).

    .venv/bin/python bench/quant_accuracy.py [--source PATH] [--tokens 512] [--modes bf16,int8,int4,...]

Modes: bf16 (no quantization, bf16 compute), int8, int8-dynamic, int4, int4+lm_head4 (int4 with the output
layer in int4 too, normally int8) and int4+lm_head-dynamic (the output layer on the W8A8 path). Writes bench/results/quant_accuracy.json.
"""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.table import Table

from smolgate.engine import quant
from smolgate.engine.engine import Engine
from smolgate.providers.local import resolve_model

RESULTS = Path(__file__).parent / "results"
README = Path(__file__).parent.parent / "README.md"


def _load(source: str, mode: str) -> Engine:
    dtype = "float32" if mode == "fp32" else "bfloat16"
    q = {"fp32": None, "bf16": None, "int4+lm_head4": "int4", "int4+lm_head-dynamic": "int4"}.get(mode, mode)
    saved = quant.LM_HEAD_MODE
    quant.LM_HEAD_MODE = "int4" if mode == "int4+lm_head4" else saved
    try:
        engine = Engine.load(source, dtype=dtype, quant=q)
    finally:
        quant.LM_HEAD_MODE = saved
    if mode == "int4+lm_head-dynamic":  # the output layer on oneDNN's W8A8 path, the rest as int4
        head = engine.model.lm_head
        assert isinstance(head, quant.QuantLinear)
        head.dynamic = True
        engine.run(head._w8a8)
    return engine


def _logits(engine: Engine, ids: torch.Tensor) -> torch.Tensor:
    """Next-token logits [T, V] (fp32) for every position of ids [1, T]."""

    def run() -> torch.Tensor:
        with torch.inference_mode():
            model = engine.model
            return model(model.text.embed_tokens(ids), 0, last_only=False)[0].float()

    return engine.run(run)


def _mode_logits(source: str, mode: str, ids: torch.Tensor) -> torch.Tensor:
    engine = _load(source, mode)
    try:
        return _logits(engine, ids)
    finally:
        engine.close()


def compare(ref: torch.Tensor, got: torch.Tensor) -> dict[str, float]:
    cos = torch.nn.functional.cosine_similarity(ref, got, dim=-1)
    return {
        "top1": float((ref.argmax(-1) == got.argmax(-1)).float().mean()),
        "cosine_mean": float(cos.mean()),
        "cosine_min": float(cos.min()),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--source", default=None, help="checkpoint dir or .gguf (default: the packaged SmolLM2-135M)"
    )
    p.add_argument("--tokens", type=int, default=512)
    p.add_argument("--modes", default="bf16,int8,int8-dynamic,int4,int4+lm_head4,int4+lm_head-dynamic")
    args = p.parse_args()
    source = args.source or resolve_model(None)
    console = Console()
    engine = _load(source, "fp32")  # tokenizes the text and gives the reference logits
    try:
        ids = torch.tensor([engine.tokenizer.encode(README.read_text())[: args.tokens]])
        console.print(f"{source}: {ids.shape[1]} positions of README.md")
        ref = _logits(engine, ids)
    finally:
        engine.close()
    rows: list[dict[str, Any]] = []
    for mode in args.modes.split(","):
        rows.append({"mode": mode, **compare(ref, _mode_logits(source, mode, ids))})
        console.print(rows[-1])
    table = Table("mode", "top-1 agreement", "cosine mean", "cosine min", title="vs fp32")
    for r in rows:
        table.add_row(r["mode"], f"{r['top1']:.3f}", f"{r['cosine_mean']:.4f}", f"{r['cosine_min']:.3f}")
    console.print(table)
    RESULTS.mkdir(exist_ok=True)
    out = {"source": source, "positions": ids.shape[1], "at": datetime.now(UTC).isoformat(), "rows": rows}
    (RESULTS / "quant_accuracy.json").write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
