"""`smolgate tune` end to end: a tiny random SmolVLM2 learns a synthetic image task (name the colour of a solid
image among four) from chance to >= 90% held-out accuracy; the adapter is in the PEFT format (PEFT loads it and
gives the logits our engine gives with it), a loss plot is written, and an interrupted run resumes."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from typer.testing import CliRunner

sys.path[:0] = [str(Path(__file__).parent), str(Path(__file__).parents[1] / "engine")]
from checkpoints import make_checkpoint  # noqa: E402
from colours import QUESTION, samples, write_dataset  # noqa: E402

from smolgate.cli import app  # noqa: E402
from smolgate.engine.engine import ChatMessage, Engine, GenerationParams, ImagePart, TextPart  # noqa: E402

TUNE_ARGS = ["--epochs", "2", "--lr", "5e-3", "--accumulate", "4", "--threads", "2"]


@pytest.fixture(scope="module")
def tuned(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Any, float]:
    torch.set_num_threads(2)
    tmp = tmp_path_factory.mktemp("tune")
    base, ref = make_checkpoint("smolvlm2-256m", tmp / "base")
    write_dataset(tmp / "train.jsonl", per_colour=10, seed=1)
    t0 = time.monotonic()
    result = CliRunner().invoke(
        app, ["tune", str(base), str(tmp / "train.jsonl"), "--out", str(tmp / "out"), *TUNE_ARGS]
    )
    assert result.exit_code == 0, result.output
    return base, tmp / "out", ref, time.monotonic() - t0


def accuracy(engine: Engine, adapter: str | None) -> float:
    held_out = samples(per_colour=5, seed=99)  # other shades, sizes and noise than the training images
    right = 0
    for png, colour in held_out:
        messages = [ChatMessage("user", [ImagePart(png), TextPart(QUESTION)])]
        answer = engine.generate(messages, GenerationParams(max_tokens=3, adapter=adapter)).text
        right += answer.strip().startswith(colour)
    return right / len(held_out)


def test_tune_learns_the_colour_task(tuned: tuple[Path, Path, Any, float]) -> None:
    base, out, _, seconds = tuned
    engine = Engine.load(str(base))
    assert (
        accuracy(engine, None) <= 0.5
    )  # the random base model is at chance (or below: it never says a colour)
    engine.load_adapter("colours", out)
    assert accuracy(engine, "colours") >= 0.9
    print(
        f"smolgate tune took {seconds:.0f}s"
    )  # the figure the report quotes (not asserted: the CPU is shared)
    assert (out / "loss.png").is_file() or (out / "loss.svg").is_file()
    state = torch.load(out / "checkpoint" / "state.pt", weights_only=False)
    assert state["step"] == 2 * 10 and state["losses"][-1] < state["losses"][0]


def test_peft_loads_the_adapter_and_agrees(tuned: tuple[Path, Path, Any, float]) -> None:
    from test_lora_parity import peft_logits

    base, out, ref, _ = tuned
    config = json.loads((out / "adapter_config.json").read_text())
    assert config["peft_type"] == "LORA" and config["r"] == 8
    engine = Engine.load(str(base))
    engine.load_adapter("colours", out)
    ids, pixels = engine._prepare([ChatMessage("user", [ImagePart(samples(1, 5)[0][0]), TextPart(QUESTION)])])
    adapters = engine.scheduler.adapters
    assert adapters is not None
    with torch.inference_mode(), adapters.rows(adapters.slot("colours")):
        ours = engine.model(engine.model.embed(ids, pixels), 0, last_only=False)[0]
    theirs = peft_logits(ref, out, ids, pixels)
    assert (ours - theirs).abs().max().item() <= 1e-4


def test_an_interrupted_run_resumes_from_its_checkpoint(
    tmp_path: Path, tuned: tuple[Path, Path, Any, float]
) -> None:
    """A run stopped after epoch 1 (here: asked for 1 epoch) continues at step 3 when asked for 2."""
    base = tuned[0]
    write_dataset(tmp_path / "small.jsonl", per_colour=2, seed=3)  # 8 examples: 2 steps per epoch
    args = [
        "tune",
        str(base),
        str(tmp_path / "small.jsonl"),
        "--out",
        str(tmp_path / "out"),
        "--accumulate",
        "4",
    ]
    assert CliRunner().invoke(app, [*args, "--epochs", "1"]).exit_code == 0
    first = torch.load(tmp_path / "out" / "checkpoint" / "state.pt", weights_only=False)
    assert first["step"] == 2
    assert CliRunner().invoke(app, [*args, "--epochs", "2"]).exit_code == 0
    second = torch.load(tmp_path / "out" / "checkpoint" / "state.pt", weights_only=False)
    assert second["step"] == 4 and second["losses"][:2] == first["losses"]


def test_vision_lora_reaches_the_encoder_and_connector(
    tmp_path: Path, tuned: tuple[Path, Path, Any, float]
) -> None:
    from safetensors.torch import load_file
    from test_lora_parity import peft_logits

    base, _, ref, _ = tuned
    write_dataset(tmp_path / "small.jsonl", per_colour=1, seed=4)
    out = tmp_path / "vision"
    args = ["tune", str(base), str(tmp_path / "small.jsonl"), "--out", str(out), "--vision", "--epochs", "1"]
    assert CliRunner().invoke(app, [*args, "--lr", "1e-2"]).exit_code == 0
    names = load_file(str(out / "adapter_model.safetensors"))
    assert any(".vision_model.encoder." in n for n in names) and any(".connector." in n for n in names)
    engine = Engine.load(str(base))
    engine.load_adapter("v", out)
    ids, pixels = engine._prepare([ChatMessage("user", [ImagePart(samples(1, 6)[0][0]), TextPart(QUESTION)])])
    adapters = engine.scheduler.adapters
    assert adapters is not None
    with torch.inference_mode(), adapters.rows(adapters.slot("v")):
        ours = engine.model(engine.model.embed(ids, pixels), 0, last_only=False)[0]
    assert (ours - peft_logits(ref, out, ids, pixels)).abs().max().item() <= 1e-4
