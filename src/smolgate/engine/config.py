"""Model configuration: the few numbers the engine needs, read from an HF config and checked against weights.

Published SmolVLM2 config.json files omit vision keys (500M/256M have no `intermediate_size`; early revisions had
no `num_hidden_layers`), which transformers silently fills from `SmolVLMVisionConfig` defaults. We apply the same
defaults, then derive every value the tensor shapes determine: a defaulted value that disagrees with the weights
is replaced, an explicit one that disagrees is an error (the checkpoint or its config is broken).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

Shapes = Mapping[str, Sequence[int]]  # checkpoint tensor name -> shape (from safetensors headers)

# transformers SmolVLMVisionConfig / Idefics3VisionConfig defaults (identical).
VISION_DEFAULTS: dict[str, Any] = {
    "hidden_size": 1152,
    "intermediate_size": 3072,
    "num_hidden_layers": 12,
    "num_attention_heads": 16,
    "image_size": 224,
    "patch_size": 32,
    "layer_norm_eps": 1e-6,
    "hidden_act": "gelu_pytorch_tanh",
}
# transformers LlamaConfig defaults (SmolVLM overrides rms_norm_eps to 1e-5 for its text config).
TEXT_DEFAULTS: dict[str, Any] = {
    "vocab_size": 32000,
    "hidden_size": 4096,
    "intermediate_size": 11008,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "rms_norm_eps": 1e-6,
    "rope_theta": 10000.0,
    "max_position_embeddings": 2048,
    "tie_word_embeddings": False,
}
VLM_TYPES = ("smolvlm", "idefics3")


@dataclass(frozen=True, slots=True)
class VisionConfig:
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    image_size: int
    patch_size: int
    layer_norm_eps: float = 1e-6

    @property
    def patches_per_side(self) -> int:
        return self.image_size // self.patch_size

    @property
    def num_patches(self) -> int:
        return self.patches_per_side**2

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads


@dataclass(frozen=True, slots=True)
class TextConfig:
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    rms_norm_eps: float
    rope_theta: float
    max_position_embeddings: int
    tie_word_embeddings: bool = False


@dataclass(frozen=True, slots=True)
class ModelConfig:
    model_type: str  # "smolvlm" | "idefics3" | "llama"
    text: TextConfig
    vision: VisionConfig | None = None
    scale_factor: int = 1
    image_token_id: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # informational only (e.g. GGUF name)

    @property
    def is_vlm(self) -> bool:
        return self.vision is not None

    @property
    def image_seq_len(self) -> int:
        """Text tokens per image tile after pixel shuffle (64 for 512/16 with r=4, 81 for 384/14 with r=3)."""
        assert self.vision is not None
        return self.vision.num_patches // self.scale_factor**2

    @classmethod
    def from_hf_config(cls, cfg: Mapping[str, Any], shapes: Shapes | None = None) -> ModelConfig:
        shapes = shapes or {}
        model_type = cfg.get("model_type", "llama")
        if model_type in VLM_TYPES:
            text = _text_config(
                {"rms_norm_eps": 1e-5, **cfg.get("text_config", {})}, shapes, "model.text_model."
            )
            if "tie_word_embeddings" in cfg:  # VLMs keep the flag at the top level
                text = replace(text, tie_word_embeddings=bool(cfg["tie_word_embeddings"]))
            vision = _vision_config(cfg.get("vision_config", {}), shapes, "model.vision_model.")
            scale = int(cfg.get("scale_factor", 2))
            proj = shapes.get("model.connector.modality_projection.proj.weight")
            if proj is not None and tuple(proj) != (text.hidden_size, vision.hidden_size * scale**2):
                raise ValueError(f"connector shape {tuple(proj)} does not match scale_factor={scale}")
            return cls(model_type, text, vision, scale, int(cfg.get("image_token_id", 128257)))
        if model_type == "llama":
            return cls(model_type, _text_config(cfg, shapes, "model."))
        raise ValueError(f"unsupported model_type {model_type!r} (expected one of {VLM_TYPES} or 'llama')")


def _pick(
    cfg: Mapping[str, Any], defaults: Mapping[str, Any], key: str, derived: int | None, where: str
) -> Any:
    """Explicit value, checked against the weights; else the weights' value; else the transformers default."""
    if key in cfg and cfg[key] is not None:
        if derived is not None and cfg[key] != derived:
            raise ValueError(f"{where}.{key}={cfg[key]} in config but the weights say {derived}")
        return cfg[key]
    return derived if derived is not None else defaults[key]


def _count_layers(shapes: Shapes, prefix: str) -> int | None:
    pattern = re.compile(re.escape(prefix) + r"(\d+)\.")
    ids = {int(m.group(1)) for name in shapes if (m := pattern.match(name))}
    return max(ids) + 1 if ids else None


def _vision_config(cfg: Mapping[str, Any], shapes: Shapes, prefix: str) -> VisionConfig:
    patch = shapes.get(prefix + "embeddings.patch_embedding.weight")  # [D, 3, p, p]
    pos = shapes.get(prefix + "embeddings.position_embedding.weight")  # [N, D]
    fc1 = shapes.get(prefix + "encoder.layers.0.mlp.fc1.weight")  # [I, D]
    hidden = patch[0] if patch else None
    patch_size = patch[-1] if patch else None
    image_size = None
    if pos and patch_size:
        side = math.isqrt(pos[0])
        image_size = side * patch_size
    if cfg.get("hidden_act", VISION_DEFAULTS["hidden_act"]) != "gelu_pytorch_tanh":
        raise ValueError(f"unsupported vision activation {cfg['hidden_act']!r}")
    p = _pick(cfg, VISION_DEFAULTS, "patch_size", patch_size, "vision_config")
    size = _pick(cfg, VISION_DEFAULTS, "image_size", None, "vision_config")
    if image_size is not None and size // p != image_size // p:  # conv stride drops remainder pixels (384/14)
        if "image_size" in cfg:
            raise ValueError(f"vision_config.image_size={size} but position_embedding implies {image_size}")
        size = image_size
    return VisionConfig(
        hidden_size=_pick(cfg, VISION_DEFAULTS, "hidden_size", hidden, "vision_config"),
        intermediate_size=_pick(
            cfg, VISION_DEFAULTS, "intermediate_size", fc1[0] if fc1 else None, "vision_config"
        ),
        num_layers=_pick(
            cfg,
            VISION_DEFAULTS,
            "num_hidden_layers",
            _count_layers(shapes, prefix + "encoder.layers."),
            "vision_config",
        ),
        num_heads=_pick(cfg, VISION_DEFAULTS, "num_attention_heads", None, "vision_config"),
        image_size=size,
        patch_size=p,
        layer_norm_eps=float(_pick(cfg, VISION_DEFAULTS, "layer_norm_eps", None, "vision_config")),
    )


def _rope_theta(cfg: Mapping[str, Any]) -> float:
    params = cfg.get("rope_parameters") or cfg.get("rope_scaling") or {}
    kind = params.get("rope_type", params.get("type", "default"))
    if kind not in ("default", None):
        raise ValueError(f"unsupported RoPE type {kind!r}")
    return float(params.get("rope_theta", cfg.get("rope_theta", TEXT_DEFAULTS["rope_theta"])))


def _text_config(cfg: Mapping[str, Any], shapes: Shapes, prefix: str) -> TextConfig:
    emb = shapes.get(prefix + "embed_tokens.weight")  # [V, H]
    gate = shapes.get(prefix + "layers.0.mlp.gate_proj.weight")  # [I, H]
    q = shapes.get(prefix + "layers.0.self_attn.q_proj.weight")  # [heads*hd, H]
    k = shapes.get(prefix + "layers.0.self_attn.k_proj.weight")  # [kv*hd, H]
    hidden = _pick(cfg, TEXT_DEFAULTS, "hidden_size", emb[1] if emb else None, "text_config")
    heads = _pick(cfg, TEXT_DEFAULTS, "num_attention_heads", None, "text_config")
    head_dim = cfg.get("head_dim") or (q[0] // heads if q else hidden // heads)
    kv_derived = k[0] // head_dim if k else None
    kv = _pick(cfg, {"num_key_value_heads": heads}, "num_key_value_heads", kv_derived, "text_config")
    if q is not None and q[0] != heads * head_dim:
        raise ValueError(f"q_proj has {q[0]} rows, expected heads*head_dim={heads * head_dim}")
    if cfg.get("hidden_act", "silu") != "silu":
        raise ValueError(f"unsupported text activation {cfg['hidden_act']!r}")
    return TextConfig(
        vocab_size=_pick(cfg, TEXT_DEFAULTS, "vocab_size", emb[0] if emb else None, "text_config"),
        hidden_size=hidden,
        intermediate_size=_pick(
            cfg, TEXT_DEFAULTS, "intermediate_size", gate[0] if gate else None, "text_config"
        ),
        num_layers=_pick(
            cfg, TEXT_DEFAULTS, "num_hidden_layers", _count_layers(shapes, prefix + "layers."), "text_config"
        ),
        num_heads=heads,
        num_kv_heads=kv,
        head_dim=head_dim,
        rms_norm_eps=float(_pick(cfg, TEXT_DEFAULTS, "rms_norm_eps", None, "text_config")),
        rope_theta=_rope_theta(cfg),
        max_position_embeddings=int(
            _pick(cfg, TEXT_DEFAULTS, "max_position_embeddings", None, "text_config")
        ),
        tie_word_embeddings=bool(cfg.get("tie_word_embeddings", False)),
    )
