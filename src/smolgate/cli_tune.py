"""`smolgate tune BASE DATA.jsonl --out DIR`: fine-tune a LoRA adapter on this CPU (engine/lora/trainer.py).

The adapter is written in the PEFT format; serve it with a local provider's `adapters: {name: DIR}` and ask
for `local/<model>+<name>`.
"""

from __future__ import annotations

import time
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from .cli_checks import fail


def tune_cmd(
    base: str = typer.Argument(..., help="base model: a safetensors checkpoint directory or HF repo id"),
    data: Path = typer.Argument(..., help="JSONL: one {'messages': [...]} per line, the last the answer"),
    out: Path = typer.Option(..., "--out", "-o", help="where the adapter (PEFT format) is written"),
    epochs: int = typer.Option(3, "--epochs", min=1),
    lr: float = typer.Option(1e-3, "--lr", min=0.0),
    rank: int = typer.Option(8, "--rank", "-r", min=1),
    alpha: float = typer.Option(16.0, "--alpha"),
    vision: bool = typer.Option(False, "--vision", help="LoRA on the vision encoder and connector too"),
    accumulate: int = typer.Option(4, "--accumulate", min=1, help="examples per optimizer step"),
    save_every: int = typer.Option(0, "--save-every", min=0, help="steps between checkpoints (0: per epoch)"),
    threads: int | None = typer.Option(None, "--threads", min=1),
    seed: int = typer.Option(0, "--seed"),
) -> None:
    """Fine-tune a LoRA adapter on the CPU (resumes from DIR/checkpoint when a run was interrupted)."""
    try:
        from .engine.lora.data import DataError, read_jsonl
        from .engine.lora.train import Base
        from .engine.lora.trainer import Progress as Step
        from .engine.lora.trainer import TuneConfig, tune
    except ImportError as exc:
        fail(f"tuning needs the engine: pip install 'smolgate[engine]' ({exc.name} is missing)")
    console = Console(stderr=True)
    t0 = time.monotonic()
    try:
        loaded = Base.load(base)
        examples = [loaded.example(messages, answer) for messages, answer in read_jsonl(data)]
    except (OSError, ValueError, DataError) as exc:
        fail(str(exc))
    if not examples:
        fail(f"{data}: no examples")
    cfg = TuneConfig(
        epochs=epochs, lr=lr, r=rank, alpha=alpha, vision=vision, accumulate=accumulate,
        save_every=save_every, seed=seed, threads=threads,
    )  # fmt: skip
    console.print(
        f"tuning {escape(base)} on {len(examples)} examples ({'text + vision' if vision else 'text'} LoRA)"
    )
    columns = (
        TextColumn("[bold]tune"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]:.4f}"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console) as bar:
        task = bar.add_task("tune", total=None, loss=float("nan"))

        def on_step(p: Step) -> None:
            bar.update(task, completed=p.step, total=p.total, loss=p.loss)

        tune(loaded, examples, out, cfg, on_step)
    console.print(
        f"adapter written to {escape(str(out))} in {time.monotonic() - t0:.0f}s (loss plot beside it)"
    )
