"""Model sources (local dir, HF cache layout, offline miss), safetensors loading, config derivation."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
from checkpoints import build_reference, make_checkpoint, save_checkpoint

from smolgate.engine.config import ModelConfig
from smolgate.engine.engine import Engine, find_cached_smolvlm
from smolgate.engine.weights import (
    ModelNotFound,
    SafetensorsCheckpoint,
    cached_snapshot,
    download,
    read_json,
    resolve_source,
)

REVISION = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture(scope="module")
def vlm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.set_num_threads(2)
    return make_checkpoint("smolvlm2-256m", tmp_path_factory.mktemp("vlm"))[0]


def hf_cache_with(cache: Path, repo_id: str, checkpoint: Path) -> Path:
    """Lay out `checkpoint` as huggingface_hub does: blobs, snapshots/<rev>/ symlinks, refs/main."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / REVISION
    (repo / "blobs").mkdir(parents=True)
    snapshot.mkdir(parents=True)
    for i, file in enumerate(sorted(checkpoint.iterdir())):
        blob = repo / "blobs" / f"{i:040x}"
        shutil.copy(file, blob)
        (snapshot / file.name).symlink_to(Path("../../blobs") / blob.name)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(REVISION)
    return snapshot


@pytest.fixture
def hf_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path / "hf" / "hub"
    cache.mkdir(parents=True)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("HUGGINGFACE_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return cache


def logits(engine: Engine) -> torch.Tensor:
    with torch.inference_mode():
        return engine.model(engine.model.embed(torch.tensor([[1, 2, 3, 400, 5000]])))


def test_local_directory(vlm_dir: Path) -> None:
    assert resolve_source(str(vlm_dir)) == vlm_dir
    engine = Engine.load(str(vlm_dir))
    assert engine.model_id == vlm_dir.name and engine.supports_images and engine.supports_video


def test_hf_cache_layout(vlm_dir: Path, hf_env: Path) -> None:
    snapshot = hf_cache_with(hf_env, "TinyOrg/tiny-smolvlm", vlm_dir)
    assert resolve_source("TinyOrg/tiny-smolvlm").resolve() == snapshot.resolve()
    engine = Engine.load("TinyOrg/tiny-smolvlm")
    assert engine.model_id == "TinyOrg/tiny-smolvlm"
    assert torch.equal(logits(engine), logits(Engine.load(str(vlm_dir))))
    assert (
        find_cached_smolvlm() == "TinyOrg/tiny-smolvlm"
    )  # the preferred 500M is absent: any SmolVLM will do


def test_find_cached_smolvlm_prefers_the_requested_repo(vlm_dir: Path, hf_env: Path) -> None:
    assert find_cached_smolvlm() is None
    hf_cache_with(hf_env, "AAA/first", vlm_dir)
    hf_cache_with(hf_env, "HuggingFaceTB/SmolVLM2-500M-Video-Instruct", vlm_dir)
    assert find_cached_smolvlm() == "HuggingFaceTB/SmolVLM2-500M-Video-Instruct"
    assert find_cached_smolvlm("AAA/first") == "AAA/first"


def test_missing_repo_offline_fails_clearly(hf_env: Path) -> None:
    with pytest.raises(ModelNotFound) as info:
        Engine.load("HuggingFaceTB/not-downloaded-model")
    message = str(info.value)
    assert "HuggingFaceTB/not-downloaded-model" in message and "HF_HUB_OFFLINE" in message
    assert str(hf_env) in message
    assert isinstance(info.value, FileNotFoundError)
    assert cached_snapshot("HuggingFaceTB/not-downloaded-model") is None
    with pytest.raises(ModelNotFound, match="smolgate pull"):
        download("HuggingFaceTB/not-downloaded-model")  # what `smolgate pull` calls


def test_nonsense_source_is_rejected() -> None:
    with pytest.raises(ModelNotFound, match="not an existing path"):
        resolve_source("/definitely/not/here")


def test_sharded_checkpoint_loads_like_a_single_file(vlm_dir: Path, tmp_path: Path) -> None:
    model = build_reference("smolvlm2-256m")  # same seed as vlm_dir's
    sharded = tmp_path / "sharded"
    model.save_pretrained(sharded, max_shard_size="2MB")
    assert (sharded / "model.safetensors.index.json").is_file()
    assert len(SafetensorsCheckpoint(sharded).files) > 1
    for name in (
        "config.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "preprocessor_config.json",
        "processor_config.json",
        "chat_template.json",
    ):
        shutil.copy(vlm_dir / name, sharded / name)
    assert torch.equal(logits(Engine.load(str(sharded))), logits(Engine.load(str(vlm_dir))))


def test_tensors_are_cast_one_by_one(vlm_dir: Path) -> None:
    ckpt = SafetensorsCheckpoint(vlm_dir)
    shapes = ckpt.shapes()
    seen = 0
    for name, tensor in ckpt.tensors(torch.bfloat16):
        assert tensor.dtype == torch.bfloat16 and tuple(tensor.shape) == shapes[name]
        seen += 1
    assert seen == len(shapes)
    engine = Engine.load(str(vlm_dir), dtype="bfloat16")
    assert {p.dtype for p in engine.model.parameters()} == {torch.bfloat16}
    ours, ref = logits(engine).float(), logits(Engine.load(str(vlm_dir)))
    assert torch.corrcoef(torch.cat([ours, ref]))[0, 1] > 0.99


def test_config_fills_published_gaps_and_rejects_contradictions(vlm_dir: Path) -> None:
    cfg_json: dict[str, Any] = read_json(vlm_dir, "config.json")
    assert "intermediate_size" not in cfg_json["vision_config"]  # as in the published 256M/500M configs
    shapes = SafetensorsCheckpoint(vlm_dir).shapes()
    cfg = ModelConfig.from_hf_config(cfg_json, shapes)
    assert cfg.vision is not None and cfg.vision.intermediate_size == 64 and cfg.vision.num_layers == 2
    assert cfg.image_seq_len == (64 // 8) ** 2 // 4**2
    without_shapes = ModelConfig.from_hf_config(cfg_json)
    assert (
        without_shapes.vision is not None and without_shapes.vision.intermediate_size == 3072
    )  # the default
    broken = json.loads(json.dumps(cfg_json))
    broken["vision_config"]["hidden_size"] = 48
    with pytest.raises(ValueError, match="hidden_size"):
        ModelConfig.from_hf_config(broken, shapes)
    broken = json.loads(json.dumps(cfg_json))
    broken["scale_factor"] = 2
    with pytest.raises(ValueError, match="scale_factor"):
        ModelConfig.from_hf_config(broken, shapes)


def test_config_contradicting_the_weights_fails_loading(tmp_path: Path) -> None:
    path = save_checkpoint(build_reference("smollm2-text"), "smollm2-text", tmp_path / "text")
    config = read_json(path, "config.json")
    config["num_hidden_layers"] = 1  # fewer layers than the weights hold
    (path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="num_hidden_layers"):
        Engine.load(str(path))


def published_500m() -> tuple[dict[str, Any], dict[str, tuple[int, ...]]]:
    """SmolVLM2-500M-Video-Instruct's config.json (transformers 4.47 era) and its tensor shapes."""
    config = {
        "architectures": ["SmolVLMForConditionalGeneration"],
        "model_type": "smolvlm",
        "image_token_id": 49190,
        "scale_factor": 4,
        "pad_token_id": 128002,
        "tie_word_embeddings": False,
        "torch_dtype": "float32",
        "use_cache": False,
        "text_config": {
            "architectures": ["VLlama3ForCausalLM"],
            "model_type": "llama",
            "head_dim": 64,
            "hidden_size": 960,
            "intermediate_size": 2560,
            "num_attention_heads": 15,
            "num_key_value_heads": 5,
            "num_hidden_layers": 32,
            "max_position_embeddings": 8192,
            "rms_norm_eps": 1e-5,
            "rope_theta": 100000,
            "rope_interleaved": False,
            "qk_layer_norms": False,
            "use_resampler": False,
            "pixel_shuffle_factor": 4,
            "pad_token_id": 2,
            "vocab_size": 49280,
        },
        "vision_config": {
            "model_type": "smolvlm_vision",
            "hidden_size": 768,
            "num_attention_heads": 12,
            "patch_size": 16,
            "image_size": 512,
            "max_image_size": {"longest_edge": 512},
            "size": {"longest_edge": 2048},
        },
        "vocab_size": 49280,
    }
    v, t = "model.vision_model.", "model.text_model."
    shapes: dict[str, tuple[int, ...]] = {
        v + "embeddings.patch_embedding.weight": (768, 3, 16, 16),
        v + "embeddings.position_embedding.weight": (1024, 768),
        "model.connector.modality_projection.proj.weight": (960, 768 * 16),
        t + "embed_tokens.weight": (49280, 960),
        "lm_head.weight": (49280, 960),
    }
    for i in range(12):
        shapes[f"{v}encoder.layers.{i}.mlp.fc1.weight"] = (3072, 768)
    for i in range(32):
        shapes[f"{t}layers.{i}.mlp.gate_proj.weight"] = (2560, 960)
        shapes[f"{t}layers.{i}.self_attn.q_proj.weight"] = (960, 960)
        shapes[f"{t}layers.{i}.self_attn.k_proj.weight"] = (320, 960)
    return config, shapes


def test_published_500m_config_reads_as_documented() -> None:
    cfg = ModelConfig.from_hf_config(*published_500m())
    assert cfg.vision is not None
    v, t = cfg.vision, cfg.text
    assert (v.hidden_size, v.intermediate_size, v.num_layers, v.num_heads, v.image_size, v.patch_size) == (
        768,
        3072,
        12,
        12,
        512,
        16,
    )
    assert (t.hidden_size, t.intermediate_size, t.num_layers, t.num_heads, t.num_kv_heads, t.head_dim) == (
        960,
        2560,
        32,
        15,
        5,
        64,
    )
    assert (t.rope_theta, t.rms_norm_eps, t.vocab_size, t.tie_word_embeddings) == (
        100000.0,
        1e-5,
        49280,
        False,
    )
    assert (cfg.scale_factor, cfg.image_token_id, cfg.image_seq_len) == (4, 49190, 64)


def test_so400m_tower_keeps_its_384_tile() -> None:
    """2.2B: 384 px tiles with 14 px patches -> 27x27 positions; the conv drops the last 6 px."""
    config, shapes = published_500m()
    config["vision_config"] = {
        "hidden_size": 1152,
        "patch_size": 14,
        "image_size": 384,
        "num_attention_heads": 16,
    }
    config["scale_factor"] = 3
    shapes["model.vision_model.embeddings.patch_embedding.weight"] = (1152, 3, 14, 14)
    shapes["model.vision_model.embeddings.position_embedding.weight"] = (729, 1152)
    shapes["model.connector.modality_projection.proj.weight"] = (960, 1152 * 9)
    for i in range(12):
        shapes[f"model.vision_model.encoder.layers.{i}.mlp.fc1.weight"] = (4304, 1152)
    cfg = ModelConfig.from_hf_config(config, shapes)
    assert cfg.vision is not None and (cfg.vision.image_size, cfg.vision.intermediate_size) == (384, 4304)
    assert cfg.image_seq_len == 81


def test_loading_keeps_the_yielded_tensors_without_copying(vlm_dir: Path) -> None:
    from smolgate.engine.model.smolvlm import build_model

    ckpt = SafetensorsCheckpoint(vlm_dir)
    cfg = ModelConfig.from_hf_config(read_json(vlm_dir, "config.json"), ckpt.shapes())
    yielded: set[int] = set()

    def recording() -> Any:
        for name, tensor in ckpt.tensors(torch.bfloat16):
            yielded.add(tensor.data_ptr())
            yield name, tensor

    model = build_model(cfg, recording())
    assert {p.data_ptr() for p in model.parameters()} == yielded  # the model holds exactly those buffers
