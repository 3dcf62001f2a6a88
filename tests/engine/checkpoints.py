"""Tiny random checkpoints in the published layouts, built offline with transformers (the reference).

Each variant mirrors a real family at toy size (weights stay random; `initializer_range` is raised so logits
have clear margins and greedy decoding is not decided by rounding):
- smolvlm2-256m: SigLIP-B/16-like tower, scale factor 4, GQA text model; its config.json drops the vision
  `intermediate_size` / `num_hidden_layers` keys exactly like the published 256M/500M configs do.
- smolvlm2-2.2b: so400m/14-like tower whose tile is not a multiple of the patch (384/14 -> 66/7), scale 3, MHA,
  rope_theta 273768.
- smolvlm-v1: SmolVLM v1 saved as Idefics3ForConditionalGeneration (model_type idefics3).
- smollm2-text: a plain LlamaForCausalLM with tied embeddings (SmolLM2 layout).
Tokenizer and processor files come from tests/engine/fixtures.py (SmolLM2 vocabulary + SmolVLM2 special tokens).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import fixtures
import torch

SMOLLM2_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}"
    "{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

_TEXT = {
    "vocab_size": fixtures.VOCAB_SIZE,
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
}
VARIANTS: dict[str, dict[str, Any]] = {
    "smolvlm2-256m": {
        "vision": {
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "image_size": 64,
            "patch_size": 8,
        },
        "text": {
            **_TEXT,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "head_dim": 16,
            "rope_theta": 100000.0,
            "max_position_embeddings": 8192,
        },
        "scale_factor": 4,
        "drop_vision_keys": ("intermediate_size", "num_hidden_layers"),
    },
    "smolvlm2-2.2b": {
        "vision": {
            "hidden_size": 48,
            "intermediate_size": 96,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "image_size": 66,
            "patch_size": 7,
        },
        "text": {
            **_TEXT,
            "num_attention_heads": 4,
            "num_key_value_heads": 4,
            "rope_theta": 273768.0,
            "max_position_embeddings": 16384,
        },
        "scale_factor": 3,
    },
    "smolvlm-v1": {
        "vision": {
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "image_size": 32,
            "patch_size": 8,
        },
        "text": {**_TEXT, "num_attention_heads": 4, "num_key_value_heads": 1, "rope_theta": 100000.0},
        "scale_factor": 2,
    },
    "smollm2-text": {
        "text": {
            **_TEXT,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "rope_theta": 100000.0,
            "tie_word_embeddings": True,
            "max_position_embeddings": 8192,
        },
    },
}
VLM_VARIANTS = ("smolvlm2-256m", "smolvlm2-2.2b", "smolvlm-v1")
GENERATION_CONFIG = {"bos_token_id": 1, "eos_token_id": fixtures.EOS_TOKEN_ID, "pad_token_id": 2}


def _text_config(spec: dict[str, Any]) -> dict[str, Any]:
    text = dict(spec)
    theta = text.pop("rope_theta")
    return {
        **text,
        "model_type": "llama",
        "rms_norm_eps": 1e-5,
        "initializer_range": 0.1,
        "rope_parameters": {"rope_type": "default", "rope_theta": theta},
    }


def build_reference(variant: str, seed: int = 0) -> torch.nn.Module:
    """The transformers model for `variant` with seeded random weights, fp32, eval mode."""
    from transformers import (
        Idefics3Config,
        Idefics3ForConditionalGeneration,
        LlamaConfig,
        LlamaForCausalLM,
        SmolVLMConfig,
        SmolVLMForConditionalGeneration,
    )

    from smolgate.engine import dequant

    spec = VARIANTS[variant]
    # a compile in another thread (a live engine's background one) saves and restores torch's global random
    # state: it would rewind it in the middle of this seeded build
    while dequant.warming():
        time.sleep(0.05)
    torch.manual_seed(seed)
    if variant == "smollm2-text":
        model: Any = LlamaForCausalLM(LlamaConfig(**_text_config(spec["text"]), **GENERATION_CONFIG))
    else:
        config_cls, model_cls = (
            (Idefics3Config, Idefics3ForConditionalGeneration)
            if variant == "smolvlm-v1"
            else (SmolVLMConfig, SmolVLMForConditionalGeneration)
        )
        config = config_cls(
            text_config=_text_config(spec["text"]),
            vision_config={**spec["vision"], "initializer_range": 0.1},
            scale_factor=spec["scale_factor"],
            image_token_id=fixtures.IMAGE_TOKEN_ID,
            tie_word_embeddings=False,
            **GENERATION_CONFIG,
        )
        model = model_cls(config)
    model.generation_config.update(**GENERATION_CONFIG)
    return model.eval()


def save_checkpoint(model: torch.nn.Module, variant: str, dst: str | Path) -> Path:
    """save_pretrained (safetensors) + tokenizer/processor files; config.json trimmed like the published one."""
    dst = Path(dst)
    model.save_pretrained(dst, safe_serialization=True)
    config = json.loads((dst / "config.json").read_text())
    spec = VARIANTS[variant]
    for key in spec.get("drop_vision_keys", ()):
        config["vision_config"].pop(key, None)
    (dst / "config.json").write_text(json.dumps(config, indent=2))
    (dst / "generation_config.json").write_text(json.dumps(GENERATION_CONFIG))
    if variant == "smollm2-text":
        fixtures.build_tokenizer(dst, chat_template=SMOLLM2_TEMPLATE)
    else:
        fixtures.build_checkpoint_dir(dst, variant, config=model.config.to_dict())
    return dst


def make_checkpoint(variant: str, dst: str | Path, seed: int = 0) -> tuple[Path, torch.nn.Module]:
    """Build the reference model for `variant`, save it to `dst`; return (directory, reference model)."""
    model = build_reference(variant, seed)
    return save_checkpoint(model, variant, dst), model
