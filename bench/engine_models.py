"""Random-weight checkpoints of the real SmolVLM2 shapes for the engine benchmark (speed does not depend on values).

    python bench/engine_models.py SHAPE DST_DIR

Shapes come from ../shared/reference/smolvlm.md §0-1. The model is built by transformers (the reference) in
bf16 and saved with `save_pretrained`; tokenizer / processor files come from tests/engine/fixtures.py (the SmolLM2
vocabulary with the SmolVLM2 special tokens at their real ids). A sibling `DST_DIR-1tile` shares the weights
through symlinks and differs only in preprocessor_config.json (longest edge = one tile), for quick image prompts.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]

# name -> (transformers SmolVLMConfig pieces, fixtures variant for the processor files)
SHAPES: dict[str, dict[str, Any]] = {
    "256m": {
        "vision": {
            "hidden_size": 768,
            "intermediate_size": 3072,
            "num_hidden_layers": 12,
            "num_attention_heads": 12,
            "image_size": 512,
            "patch_size": 16,
        },
        "text": {
            "hidden_size": 576,
            "intermediate_size": 1536,
            "num_hidden_layers": 30,
            "num_attention_heads": 9,
            "num_key_value_heads": 3,
            "head_dim": 64,
            "rope_theta": 100000.0,
            "max_position_embeddings": 8192,
        },
        "scale_factor": 4,
        "variant": "smolvlm2-256m",
    },
    "500m": {
        "vision": {
            "hidden_size": 768,
            "intermediate_size": 3072,
            "num_hidden_layers": 12,
            "num_attention_heads": 12,
            "image_size": 512,
            "patch_size": 16,
        },
        "text": {
            "hidden_size": 960,
            "intermediate_size": 2560,
            "num_hidden_layers": 32,
            "num_attention_heads": 15,
            "num_key_value_heads": 5,
            "head_dim": 64,
            "rope_theta": 100000.0,
            "max_position_embeddings": 8192,
        },
        "scale_factor": 4,
        "variant": "smolvlm2-256m",  # same processor layout (512 px tiles, 64 tokens per tile)
    },
    "2.2b": {
        "vision": {
            "hidden_size": 1152,
            "intermediate_size": 4304,
            "num_hidden_layers": 27,
            "num_attention_heads": 16,
            "image_size": 384,
            "patch_size": 14,
        },
        "text": {
            "hidden_size": 2048,
            "intermediate_size": 8192,
            "num_hidden_layers": 24,
            "num_attention_heads": 32,
            "num_key_value_heads": 32,
            "head_dim": 64,
            "rope_theta": 273768.0,
            "max_position_embeddings": 16384,
        },
        "scale_factor": 3,
        "variant": "smolvlm2-2.2b",
    },
}
VOCAB = 49280
IMAGE_TOKEN_ID = 49190
GENERATION_CONFIG = {"bos_token_id": 1, "eos_token_id": 49279, "pad_token_id": 2}
MARKER = ".complete"


def one_tile_dir(ckpt: Path) -> Path:
    return ckpt.with_name(ckpt.name + "-1tile")


def make_one_tile(ckpt: Path, dst: Path | None = None) -> Path:
    """A dir of symlinks to `ckpt` whose preprocessor's longest edge is one tile (1 tile per image)."""
    dst = dst or one_tile_dir(ckpt)
    dst.mkdir(parents=True, exist_ok=True)
    for f in ckpt.iterdir():
        if f.name in ("preprocessor_config.json", MARKER):
            continue
        link = dst / f.name
        if not link.exists():
            link.symlink_to(f.resolve())
    pre = json.loads((ckpt / "preprocessor_config.json").read_text())
    pre["size"] = {"longest_edge": pre["max_image_size"]["longest_edge"]}
    (dst / "preprocessor_config.json").write_text(json.dumps(pre, indent=2))
    return dst


def build(shape: str, dst: Path) -> Path:
    import torch
    from transformers import SmolVLMConfig, SmolVLMForConditionalGeneration

    sys.path.insert(0, str(REPO / "tests" / "engine"))
    import fixtures  # type: ignore[import-not-found]

    spec = SHAPES[shape]
    text = dict(spec["text"])
    theta = text.pop("rope_theta")
    config = SmolVLMConfig(
        text_config={
            **text,
            "model_type": "llama",
            "vocab_size": VOCAB,
            "rms_norm_eps": 1e-5,
            "rope_parameters": {"rope_type": "default", "rope_theta": theta},
        },
        vision_config=spec["vision"],
        scale_factor=spec["scale_factor"],
        image_token_id=IMAGE_TOKEN_ID,
        tie_word_embeddings=False,
        **GENERATION_CONFIG,
    )
    torch.manual_seed(0)
    model = SmolVLMForConditionalGeneration._from_config(config, dtype=torch.bfloat16).eval()
    dst.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(dst, max_shard_size="2GB")
    (dst / "generation_config.json").write_text(json.dumps(GENERATION_CONFIG))
    fixtures.build_checkpoint_dir(dst, spec["variant"], config=model.config.to_dict())
    make_one_tile(dst)
    (dst / MARKER).write_text("ok\n")
    return dst


if __name__ == "__main__":
    build(sys.argv[1], Path(sys.argv[2]))
