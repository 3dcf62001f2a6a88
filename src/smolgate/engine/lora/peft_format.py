"""The PEFT adapter format: `adapter_config.json` + `adapter_model.safetensors`.

Tensor names look like `base_model.model.<checkpoint module>.lora_A.weight` ([r, in]) and `.lora_B.weight`
([out, r]); the checkpoint module name is the base checkpoint's (e.g. `model.text_model.layers.0.self_attn.q_proj`),
so the engine's own checkpoint-name mapping places it. The update is `x @ A^T @ B^T * scale` with scale
`lora_alpha / r` (or `/ sqrt(r)` with rsLoRA); `rank_pattern` / `alpha_pattern` override r / alpha per module.
`fan_in_fan_out` only describes how the *base* weight is stored (GPT-2 Conv1D); PEFT computes lora_B(lora_A(x))
either way, so it changes nothing here. Variants whose math differs (DoRA, LoRA bias, embedding LoRA,
modules_to_save) are refused rather than served wrong.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

CONFIG_FILE = "adapter_config.json"
WEIGHTS_FILE = "adapter_model.safetensors"
_PREFIX = "base_model.model."
_KEY = re.compile(r"^(?P<module>.+)\.lora_(?P<which>[AB])(?:\.[^.]+)?\.weight$")


class AdapterError(ValueError):
    """An adapter directory that is missing, malformed, or uses a LoRA variant the engine does not serve."""


@dataclass(frozen=True)
class LoraWeights:
    """One module's low-rank update: delta(x) = (x @ a^T) @ b^T * scale."""

    a: torch.Tensor  # [r, in]
    b: torch.Tensor  # [out, r]
    scale: float


def _pattern_value(patterns: dict[str, Any], module: str, default: Any) -> Any:
    """PEFT's per-module override: a key matches a module name that ends with it (at a dot boundary)."""
    for key, value in patterns.items():
        if re.match(rf"(.*\.)?{key}$", module):
            return value
    return default


def read_config(directory: Path) -> dict[str, Any]:
    path = directory / CONFIG_FILE
    if not path.is_file():
        raise AdapterError(f"{directory.name}: no {CONFIG_FILE}")
    try:
        cfg: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise AdapterError(f"{directory.name}: unreadable {CONFIG_FILE}") from exc
    if str(cfg.get("peft_type", "LORA")).upper() != "LORA":
        raise AdapterError(f"{directory.name}: not a LoRA adapter ({cfg.get('peft_type')})")
    for flag in ("use_dora", "lora_bias"):
        if cfg.get(flag):
            raise AdapterError(f"{directory.name}: {flag} adapters are not supported")
    if cfg.get("modules_to_save"):
        raise AdapterError(f"{directory.name}: modules_to_save (fully trained modules) is not supported")
    return cfg


def read_adapter(directory: str | Path) -> dict[str, LoraWeights]:
    """An adapter directory -> {checkpoint module name: LoraWeights} (fp32 tensors)."""
    directory = Path(directory)
    cfg = read_config(directory)
    weights = directory / WEIGHTS_FILE
    if not weights.is_file():
        raise AdapterError(f"{directory.name}: no {WEIGHTS_FILE}")
    pairs: dict[str, dict[str, torch.Tensor]] = {}
    for name, tensor in load_file(str(weights)).items():
        match = _KEY.match(name.removeprefix(_PREFIX))
        if match is None:
            raise AdapterError(f"{directory.name}: unsupported adapter tensor {name!r}")
        pairs.setdefault(match["module"], {})[match["which"]] = tensor.float()
    r_default, alpha_default = int(cfg.get("r", 8)), float(cfg.get("lora_alpha", 8))
    rslora = bool(cfg.get("use_rslora", False))
    out: dict[str, LoraWeights] = {}
    for module, ab in pairs.items():
        if set(ab) != {"A", "B"}:
            raise AdapterError(f"{directory.name}: {module} lacks lora_A or lora_B")
        a, b = ab["A"], ab["B"]
        r = int(_pattern_value(cfg.get("rank_pattern") or {}, module, r_default))
        if a.dim() != 2 or b.dim() != 2 or a.shape[0] != r or b.shape[1] != r:
            raise AdapterError(
                f"{directory.name}: {module} has shapes {tuple(a.shape)}, {tuple(b.shape)} for r={r}"
            )
        alpha = float(_pattern_value(cfg.get("alpha_pattern") or {}, module, alpha_default))
        out[module] = LoraWeights(a, b, alpha / (math.sqrt(r) if rslora else r))
    if not out:
        raise AdapterError(f"{directory.name}: the adapter holds no LoRA tensors")
    return out


def write_adapter(
    directory: str | Path,
    weights: Mapping[str, tuple[torch.Tensor, torch.Tensor]],
    *,
    r: int,
    alpha: float,
    base_model: str,
    extra_config: dict[str, Any] | None = None,
) -> Path:
    """{checkpoint module name: (A, B)} -> a PEFT adapter directory (what `PeftModel.from_pretrained` loads)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, torch.Tensor] = {}
    for module, (a, b) in weights.items():
        tensors[f"{_PREFIX}{module}.lora_A.weight"] = a.detach().float().contiguous()
        tensors[f"{_PREFIX}{module}.lora_B.weight"] = b.detach().float().contiguous()
    config = {
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "base_model_name_or_path": base_model,
        "r": r,
        "lora_alpha": alpha,
        "lora_dropout": 0.0,
        "use_rslora": False,
        "fan_in_fan_out": False,
        "bias": "none",
        # full names, so exactly these modules are targeted (not, say, the vision tower's q_proj too)
        "target_modules": sorted(weights),
        "inference_mode": True,
        **(extra_config or {}),
    }
    save_file(tensors, str(directory / WEIGHTS_FILE))
    (directory / CONFIG_FILE).write_text(json.dumps(config, indent=2))
    return directory
