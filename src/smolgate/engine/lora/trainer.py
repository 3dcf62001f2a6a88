"""The tuning loop: AdamW over the LoRA parameters, gradient accumulation, a checkpoint after every epoch (and
every `save_every` steps) that a later run resumes from, and the adapter written in the PEFT format at the end.

Checkpoint layout in the output directory: `checkpoint/` holds the adapter so far (PEFT format) and
`state.pt` (optimizer, step, losses, the data order's RNG); the final adapter is the directory itself.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file

from .peft_format import WEIGHTS_FILE
from .plot import plot_loss
from .train import Base, Example, TrainLora, attach, checkpoint_name, loss_of, save_adapter


@dataclass
class TuneConfig:
    epochs: int = 3
    lr: float = 1e-3
    r: int = 8
    alpha: float = 16.0
    vision: bool = False  # LoRA on the vision encoder and connector too
    accumulate: int = 4  # examples per optimizer step
    save_every: int = 0  # optimizer steps between checkpoints (0: once per epoch)
    seed: int = 0
    threads: int | None = None


@dataclass
class Progress:
    """What a progress display is told after each optimizer step."""

    step: int
    total: int
    loss: float
    losses: list[float] = field(default_factory=list)


def _resume(
    out: Path, modules: dict[str, TrainLora], optim: torch.optim.Optimizer, is_vlm: bool
) -> dict[str, object]:
    ckpt = out / "checkpoint"
    if not (ckpt / "state.pt").is_file():
        return {}
    tensors = load_file(str(ckpt / WEIGHTS_FILE))
    with torch.no_grad():
        for name, m in modules.items():
            key = f"base_model.model.{checkpoint_name(name, is_vlm)}"
            m.lora_a.copy_(tensors[f"{key}.lora_A.weight"])
            m.lora_b.copy_(tensors[f"{key}.lora_B.weight"])
    state: dict[str, object] = torch.load(ckpt / "state.pt", weights_only=False)
    optim.load_state_dict(state["optimizer"])  # type: ignore[arg-type]
    return state


def tune(
    base: Base,
    examples: list[Example],
    out: Path,
    cfg: TuneConfig,
    on_step: Callable[[Progress], None] = lambda p: None,
) -> Path:
    """Fine-tune a LoRA adapter on `examples`, resuming from `out/checkpoint` if a run left one -> `out`."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    model, is_vlm = base.model, base.model.cfg.is_vlm
    modules = attach(model, r=cfg.r, alpha=cfg.alpha, vision=cfg.vision)
    params = [p for m in modules.values() for p in (m.lora_a, m.lora_b)]
    optim = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.0)
    out.mkdir(parents=True, exist_ok=True)
    state = _resume(out, modules, optim, is_vlm)
    step = int(state.get("step", 0))  # type: ignore[call-overload]
    losses: list[float] = list(state.get("losses", []))  # type: ignore[call-overload]
    per_epoch = -(-len(examples) // cfg.accumulate)
    total = per_epoch * cfg.epochs
    model.train()
    while step < total:
        epoch, within = divmod(step, per_epoch)
        order = list(range(len(examples)))
        random.Random(cfg.seed + epoch).shuffle(order)  # the same order when resumed mid-epoch
        batch = order[within * cfg.accumulate : (within + 1) * cfg.accumulate]
        optim.zero_grad(set_to_none=True)
        total_loss = 0.0
        for i in batch:
            loss = loss_of(model, examples[i]) / len(batch)
            loss.backward()  # type: ignore[no-untyped-call]
            total_loss += float(loss.detach())
        optim.step()
        step += 1
        losses.append(total_loss)
        on_step(Progress(step, total, total_loss, losses))
        if step % (cfg.save_every or per_epoch) == 0 or step == total:
            ckpt = save_adapter(base, modules, out / "checkpoint", r=cfg.r, alpha=cfg.alpha)
            torch.save({"optimizer": optim.state_dict(), "step": step, "losses": losses}, ckpt / "state.pt")
    model.eval()
    save_adapter(base, modules, out, r=cfg.r, alpha=cfg.alpha)
    plot_loss(losses, out)
    return out
