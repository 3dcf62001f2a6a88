"""Smoke test of the engine benchmark (bench/engine.py) in its quickest mode on a tiny random SmolVLM2 checkpoint.

No timed assertions: only that the run completes and its JSON has every figure, positive, for each system run.
llama.cpp is never used here (it is built only by `--llama-cpp` runs of the bench itself).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(
    0, str(Path(__file__).resolve().parent / "engine")
)  # tests/engine modules import each other by basename

import checkpoints

REPO = Path(__file__).resolve().parents[1]

FIGURES = (
    "prefill_tok_s",
    "decode_tok_s",
    "ttft_image_s",
    "vision_ms_per_tile",
    "peak_rss_mb",
    "rss_after_load_mb",
    "load_s",
)


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("transformers")
    # the 2.2b-like variant keeps every vision key in config.json, so transformers loads it from the directory
    path, _ = checkpoints.make_checkpoint("smolvlm2-2.2b", tmp_path_factory.mktemp("bench") / "tiny")
    return path


def test_bench_engine_quick_json(tiny_checkpoint: Path, tmp_path: Path) -> None:
    out = tmp_path / "results"
    cmd = [
        sys.executable,
        str(REPO / "bench" / "engine.py"),
        "--checkpoint",
        str(tiny_checkpoint),
        "--quick",
        "--quant",
        "none",
        "--transformers",
        "bf16",
        "--prompt-tokens",
        "24",
        "--new-tokens",
        "6",
        "--stream-tokens",
        "4",
        "--stream-prompt-tokens",
        "16",
        "--streams",
        "1,4,8",
        "--out",
        str(out),
    ]
    proc = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=240, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((out / "engine-tiny-quick.json").read_text())
    assert (out / "engine-tiny-quick.png").stat().st_size > 0
    assert report["quick"] is True and report["shape"] == "tiny"
    ran = {r["name"]: r for r in report["systems"]}
    assert set(ran) == {"engine-bf16", "transformers-bf16"}
    for name, row in ran.items():
        assert row["status"] == "ok", (
            name,
            row.get("reason"),
            (out / "engine-tiny-quick.log").read_text()[-3000:],
        )
        assert row["errors"] == {}, (name, row["errors"])
        for key in FIGURES:
            assert isinstance(row[key], (int, float)) and row[key] > 0, (name, key, row.get(key))
        assert row["image_tiles"] == 1  # quick mode: the 1-tile preprocessor
        assert row["prompt_tokens"] > 0 and row["decode_tokens"] > 0
        for n in ("1", "4", "8"):
            stream = row["streams"][n]
            assert stream["tokens"] > 0 and stream["tok_s"] > 0, (name, n, stream)
    assert {t["target"] for t in report["targets"]} >= {
        "decode engine-bf16 / transformers-bf16",
        "vision ms/tile engine-bf16 / transformers-bf16",
        "engine-bf16 8 streams / 1 stream aggregate",
    }
    by_name = {t["target"]: t for t in report["targets"]}
    assert by_name["decode engine-bf16 / transformers-bf16"]["value"] > 0
    assert by_name["engine-bf16 8 streams / 1 stream aggregate"]["value"] > 0
