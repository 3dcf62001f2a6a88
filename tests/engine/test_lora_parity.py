"""LoRA serving parity: a random PEFT adapter applied by our engine gives the logits PEFT + transformers give on the
same tiny checkpoint (fp32, 1e-4), on the text decoder, the vision encoder and the connector."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from checkpoints import make_checkpoint
from peft import LoraConfig, get_peft_model
from test_model_parity import CONVERSATIONS, our_logits, ref_logits

from smolgate.engine.engine import Engine
from smolgate.engine.lora.attach import Adapters
from smolgate.engine.lora.peft_format import AdapterError, read_adapter

TOL = 1e-4
Setup = tuple[Engine, Adapters, Any, Path]
TEXT = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
# vision encoder projections and the connector, by regex so the text decoder's q/k/v stay out of this one
VISION = r".*(vision_model\.encoder\.layers\.\d+\.(self_attn\.(q|k|v|out)_proj|mlp\.fc\d)|modality_projection\.proj)"


def make_adapter(ref: Any, dst: Path, seed: int, **lora: Any) -> Path:
    """A PEFT adapter on `ref` with random A and B (B is zero at init: nothing would be tested)."""
    model = get_peft_model(ref, LoraConfig(lora_dropout=0.0, **lora))
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.1)
    model.save_pretrained(dst)
    model.unload()  # the reference model back without LoRA layers, for the next adapter
    return dst


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Setup]:
    cache: dict[str, Setup] = {}

    def get(variant: str) -> Setup:
        if variant not in cache:
            path, ref = make_checkpoint(variant, tmp_path_factory.mktemp(variant))
            engine = Engine.load(str(path))
            cache[variant] = (engine, Adapters(engine.model), ref, tmp_path_factory.mktemp(f"{variant}-lora"))
        return cache[variant]

    torch.set_num_threads(2)
    return get


def peft_logits(ref: Any, adapter: Path, ids: torch.Tensor, pixels: torch.Tensor | None) -> torch.Tensor:
    from peft import PeftModel

    model = PeftModel.from_pretrained(ref, str(adapter))
    try:
        return ref_logits(model, ids, pixels)
    finally:
        model.unload()


CASES = [
    ("smollm2-text", "text", {"target_modules": TEXT, "r": 4, "lora_alpha": 8}),
    ("smolvlm2-256m", "image", {"target_modules": TEXT, "r": 4, "lora_alpha": 16, "use_rslora": True}),
    ("smolvlm2-256m", "multi_image", {"target_modules": VISION, "r": 2, "lora_alpha": 4}),
    (
        "smolvlm2-2.2b",
        "image",
        {
            "target_modules": [*TEXT, "fc1", "fc2", "out_proj", "proj"],
            "r": 8,
            "lora_alpha": 8,
            "rank_pattern": {"o_proj": 2},
            "alpha_pattern": {"down_proj": 3},
        },
    ),
]


@pytest.mark.parametrize(("variant", "conversation", "lora"), CASES)
def test_adapter_logits_match_peft(
    setup: Callable[[str], Setup], variant: str, conversation: str, lora: dict[str, Any]
) -> None:
    engine, adapters, ref, tmp = setup(variant)
    adapter = make_adapter(ref, tmp / f"{conversation}-{lora['r']}", seed=lora["r"], **lora)
    ids, pixels = engine._prepare(CONVERSATIONS[conversation]())
    base = our_logits(engine, ids, pixels)
    adapters.load("a", adapter)
    with adapters.rows(adapters.slot("a")):
        ours = our_logits(engine, ids, pixels)
    theirs = peft_logits(ref, adapter, ids, pixels)
    assert (ours - theirs).abs().max().item() <= TOL
    assert (ours - base).abs().max().item() > 1e-2  # the adapter really changes the logits
    with adapters.rows(-1):  # the base model stays reachable beside the adapter
        assert (our_logits(engine, ids, pixels) - base).abs().max().item() == 0
    adapters.unload("a")  # (the model keeps its LoRA wrappers: the next case loads onto them)
    assert (our_logits(engine, ids, pixels) - base).abs().max().item() == 0


def test_refuses_what_it_cannot_serve(tmp_path: Path) -> None:
    (tmp_path / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "use_dora": True}))
    with pytest.raises(AdapterError, match="use_dora"):
        read_adapter(tmp_path)
    with pytest.raises(AdapterError, match="adapter_config"):
        read_adapter(tmp_path / "missing")
