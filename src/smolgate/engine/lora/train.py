"""LoRA fine-tuning on the CPU with torch autograd on our own model (model/, the reference modules, unfused).

Why ours and not transformers + PEFT: the engine then needs neither at run time, the model trained is the model
served (same math, checked against transformers in tests/engine/test_model_parity.py), and the adapter is written
in the PEFT format anyway, so PEFT loads it (tests/tune). The base weights stay frozen in fp32; only A and B train.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..config import ModelConfig
from ..image import load_image
from ..messages import ChatMessage, ImagePart, TextPart
from ..model.smolvlm import SmolVLM, build_model
from ..processor import SmolVLMProcessor
from ..tokenizer import Tokenizer
from ..weights import SafetensorsCheckpoint, read_json, resolve_source
from .peft_format import write_adapter

TEXT_TARGETS = re.compile(r"text\.layers\.\d+\.(self_attn\.[qkvo]_proj|mlp\.(gate|up|down)_proj)")
VISION_TARGETS = re.compile(
    r"vision\.encoder\.layers\.\d+\.(self_attn\.(q|k|v|out)_proj|mlp\.fc[12])|connector\.modality_projection\.proj"
)


class TrainLora(nn.Module):
    """A frozen Linear plus a trainable (x @ A^T) @ B^T * scale; PEFT's init (A Kaiming-uniform, B zero), so
    training starts from the base model exactly."""

    def __init__(self, base: nn.Linear, r: int, alpha: float) -> None:
        super().__init__()
        self.base, self.scale = base, alpha / r
        self.lora_a = nn.Parameter(torch.empty(r, base.in_features))
        self.lora_b = nn.Parameter(torch.zeros(base.out_features, r))
        nn.init.kaiming_uniform_(self.lora_a, a=math.sqrt(5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y: torch.Tensor = self.base(x)
        return y + (x @ self.lora_a.T) @ self.lora_b.T * self.scale


@dataclass(frozen=True)
class Base:
    """What tuning needs of a base checkpoint: the unfused fp32 model and its prompt preparation."""

    model: SmolVLM
    tokenizer: Tokenizer
    processor: SmolVLMProcessor | None
    source: str

    @classmethod
    def load(cls, source: str) -> Base:
        path = resolve_source(source)
        if not path.is_dir():
            raise ValueError(
                f"{source}: tuning needs a safetensors checkpoint directory or HF repo id, not a file"
            )
        ckpt = SafetensorsCheckpoint(path)
        cfg = ModelConfig.from_hf_config(read_json(path, "config.json"), ckpt.shapes())
        model = build_model(cfg, ckpt.tensors(torch.float32))
        processor = SmolVLMProcessor.from_pretrained(path) if cfg.is_vlm else None
        tokenizer = processor.tokenizer if processor is not None else Tokenizer.from_dir(path)
        return cls(model, tokenizer, processor, source)

    def prompt(self, messages: Sequence[ChatMessage]) -> tuple[torch.Tensor, torch.Tensor | None]:
        """messages -> (input ids [1, T] ending with the assistant's turn opening, pixel tiles | None)."""
        if self.processor is not None:
            decoded = [
                ChatMessage(
                    m.role,
                    [ImagePart(load_image(p.image)) if isinstance(p, ImagePart) else p for p in m.content],
                )
                for m in messages
            ]
            out = self.processor(decoded, add_generation_prompt=True)
            return out.input_ids, out.pixel_values
        plain = [
            {"role": m.role, "content": "".join(p.text for p in m.content if isinstance(p, TextPart))}
            for m in messages
        ]
        text = self.tokenizer.apply_chat_template(plain, add_generation_prompt=True)
        return torch.tensor([self.tokenizer.encode(text)]), None

    def example(self, messages: Sequence[ChatMessage], answer: str) -> Example:
        ids, pixels = self.prompt(messages)
        target = [*self.tokenizer.encode(answer), self.tokenizer.eos_token_ids[0]]
        return Example(torch.cat([ids, torch.tensor([target])], dim=1), pixels, ids.shape[1])


@dataclass(frozen=True)
class Example:
    ids: torch.Tensor  # [1, T]: prompt then answer (+ end of turn)
    pixels: torch.Tensor | None
    prompt_len: int  # the loss covers positions prompt_len.. (the answer)


def attach(model: SmolVLM, *, r: int, alpha: float, vision: bool) -> dict[str, TrainLora]:
    """Wrap the text decoder's projections (and the vision encoder's and connector's) -> {our name: module}."""
    targets = [TEXT_TARGETS, *([VISION_TARGETS] if vision else [])]
    names = [
        n
        for n, m in model.named_modules()
        if isinstance(m, nn.Linear) and any(t.fullmatch(n) for t in targets)
    ]
    if vision and model.vision is None:
        raise ValueError("--vision: this model has no vision encoder")
    out: dict[str, TrainLora] = {}
    for name in names:
        parent, _, leaf = name.rpartition(".")
        base = model.get_submodule(name)
        assert isinstance(base, nn.Linear)
        out[name] = TrainLora(base, r, alpha)
        setattr(model.get_submodule(parent), leaf, out[name])
    return out


def checkpoint_name(ours: str, is_vlm: bool) -> str:
    """Our module name -> the checkpoint's (what PEFT names): the inverse of smolvlm.checkpoint_to_module_name."""
    prefixes = {"vision.": "model.vision_model.", "connector.": "model.connector."}
    prefixes["text."] = "model.text_model." if is_vlm else "model."
    for ours_prefix, theirs in prefixes.items():
        if ours.startswith(ours_prefix):
            return theirs + ours[len(ours_prefix) :]
    return ours


def loss_of(model: SmolVLM, ex: Example) -> torch.Tensor:
    """Mean cross-entropy of the answer tokens given the prompt (image features computed with autograd: the
    serving path's feature cache is bypassed)."""
    x = model.text.embed_tokens(ex.ids)
    if ex.pixels is not None and model.vision is not None and model.connector is not None:
        pixels = ex.pixels.to(x.dtype)
        pixels = pixels[pixels.flatten(1).ne(0).any(dim=1)]  # padding tiles dropped, as in serving
        feats = model.connector(model.vision(pixels, None)).reshape(-1, x.shape[-1])
        assert model.cfg.image_token_id is not None  # every VLM config has one
        slots = ex.ids.eq(model.cfg.image_token_id)
        x = x.masked_scatter(slots[..., None], feats.to(x.dtype))
    h = model.text(x)  # [1, T, D]
    logits = model.lm_head(h[:, ex.prompt_len - 1 : -1])  # the positions that predict the answer
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), ex.ids[:, ex.prompt_len :].reshape(-1))


def save_adapter(base: Base, modules: dict[str, TrainLora], directory: Path, *, r: int, alpha: float) -> Path:
    is_vlm = base.model.cfg.is_vlm
    weights = {checkpoint_name(n, is_vlm): (m.lora_a, m.lora_b) for n, m in modules.items()}
    return write_adapter(directory, weights, r=r, alpha=alpha, base_model=base.source)
