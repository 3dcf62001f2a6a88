"""llama.cpp for the engine benchmark: a private venv with llama-cpp-python built from its PyPI sdist, and GGUF
files converted from the benchmark's own safetensors checkpoints (same weights as the other systems).

Conversion: this module writes an F16 GGUF of the text decoder with the `gguf` package's writer (llama
architecture; q/k rows permuted the way llama.cpp's convert_hf_to_gguf.py does for rotate-half checkpoints;
tokenizer copied from the packaged SmolLM2 GGUF plus the checkpoint's added tokens), then llama.cpp itself
(`llama_model_quantize`, the library behind `llama-quantize`) makes Q8_0 and Q4_K_M from it — the usual
convert-then-quantize pipeline, offline. The vision tower is not converted (no mmproj): llama.cpp rows have no
vision figures.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
CACHE = HERE / ".cache"
VENV = CACHE / "llama-venv"
LLAMA_PY = VENV / "bin" / "python"
WORKER = HERE / "engine_llama_worker.py"
DEFAULT_VERSION = "0.3.36"


def llama_python(version: str = DEFAULT_VERSION, log: Any = None) -> Path:
    """The llama venv's python, creating the venv and building llama-cpp-python (~5 min on 2 cores) if needed."""
    ok = (
        LLAMA_PY.is_file()
        and subprocess.run(
            [str(LLAMA_PY), "-c", "import llama_cpp"], capture_output=True, check=False
        ).returncode
        == 0
    )
    if ok:
        return LLAMA_PY
    CACHE.mkdir(parents=True, exist_ok=True)
    if not LLAMA_PY.is_file():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    out = log if log is not None else subprocess.DEVNULL
    # PyPI ships only the sdist: pip compiles llama.cpp (CMake, -march=native) into the wheel.
    cmd = [str(LLAMA_PY), "-m", "pip", "install", "--no-cache-dir", f"llama-cpp-python=={version}"]
    env = {**os.environ, **build_env()}
    if subprocess.run(cmd, stdout=out, stderr=out, env=env, check=False).returncode != 0:
        cmd[-1] = "llama-cpp-python"  # that version is not served: the newest available
        subprocess.run(cmd, stdout=out, stderr=out, env=env, check=True)
    return LLAMA_PY


def build_env() -> dict[str, str]:
    """CMAKE_ARGS for this CPU. With AMX in /proc/cpuinfo, -march=native compiles ggml's AMX buffer type, and
    llama_decode then segfaults in this VM (the guest may not grant AMX tile state): build without AMX, keeping
    every AVX-512 / VNNI / BF16 path and the weight repacking."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return {}
    if "amx_int8" not in flags and "amx_tile" not in flags:
        return {}
    no_amx = "-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
    return {"CMAKE_ARGS": f"-DCMAKE_C_FLAGS='{no_amx}' -DCMAKE_CXX_FLAGS='{no_amx}'"}


def extra_bufts_ok(gguf: Path) -> bool:
    """Does llama_decode survive with the default extra buffer types (weight repacking, AMX)? Checked once per
    build in a throwaway process; if not, the worker loads with use_extra_bufts=False (and the row says so)."""
    stamp = VENV / "extra_bufts_ok"
    if stamp.is_file():
        return stamp.read_text().strip() == "1"
    code = (
        "import llama_cpp\n"
        f"llm = llama_cpp.Llama(model_path={str(gguf)!r}, n_ctx=256, verbose=False)\n"
        "llm.eval([1, 2, 3, 4])\n"
    )
    ok = subprocess.run([str(LLAMA_PY), "-c", code], capture_output=True, check=False).returncode == 0
    stamp.write_text("1" if ok else "0")
    return ok


def llama_version() -> str | None:
    if not LLAMA_PY.is_file():
        return None
    r = subprocess.run(
        [str(LLAMA_PY), "-c", "import llama_cpp; print(llama_cpp.__version__)"],
        capture_output=True,
        text=True,
        check=False,
    )
    return r.stdout.strip() or None


def _permute(w: Any, n_head: int) -> Any:
    """HF rotate-half q/k rows -> llama.cpp's interleaved rope layout (convert_hf_to_gguf.py LlamaModel.permute)."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def write_f16_gguf(ckpt: Path, dst: Path) -> Path:
    """The text decoder of a SmolVLM / Llama safetensors checkpoint as an F16 GGUF (llama architecture)."""
    import numpy as np
    from gguf import GGUFReader, GGUFWriter, LlamaFileType, TokenType
    from safetensors import safe_open

    sys.path.insert(0, str(HERE.parent / "src"))
    from smolgate.engine.engine import packaged_gguf_path

    config = json.loads((ckpt / "config.json").read_text())
    text = config.get("text_config", config)
    hidden, n_layers = text["hidden_size"], text["num_hidden_layers"]
    n_head = text["num_attention_heads"]
    n_kv = text.get("num_key_value_heads", n_head)
    head_dim = text.get("head_dim") or hidden // n_head
    rope = text.get("rope_parameters") or {}
    theta = rope.get("rope_theta", text.get("rope_theta", 10000.0))
    vocab = text.get("vocab_size", config.get("vocab_size"))

    files = sorted(ckpt.glob("*.safetensors"))
    handles = [safe_open(str(f), framework="pt") for f in files]
    where = {name: h for h in handles for name in h.keys()}  # safe_open is not a dict
    prefix = "model.text_model." if any(k.startswith("model.text_model.") for k in where) else "model."

    def get(name: str) -> Any:
        return where[name].get_tensor(name).float().numpy()

    tmp = dst.with_suffix(".tmp")
    w = GGUFWriter(str(tmp), "llama")
    w.add_name(ckpt.name)
    w.add_context_length(int(text.get("max_position_embeddings", 8192)))
    w.add_embedding_length(hidden)
    w.add_block_count(n_layers)
    w.add_feed_forward_length(text["intermediate_size"])
    w.add_head_count(n_head)
    w.add_head_count_kv(n_kv)
    w.add_rope_dimension_count(head_dim)
    if head_dim != hidden // n_head:
        w.add_key_length(head_dim)
        w.add_value_length(head_dim)
    w.add_rope_freq_base(float(theta))
    w.add_layer_norm_rms_eps(float(text.get("rms_norm_eps", 1e-5)))
    w.add_vocab_size(vocab)
    w.add_file_type(LlamaFileType.MOSTLY_F16)

    # tokenizer: SmolLM2's BPE (the packaged GGUF) + the checkpoint's added tokens (SmolVLM2 specials)
    fields = GGUFReader(packaged_gguf_path()).fields
    tokens = list(fields["tokenizer.ggml.tokens"].contents())
    types = list(fields["tokenizer.ggml.token_type"].contents())
    merges = list(fields["tokenizer.ggml.merges"].contents())
    tok_json = ckpt / "tokenizer.json"
    added = json.loads(tok_json.read_text()).get("added_tokens", []) if tok_json.is_file() else []
    extra = {t["id"]: t for t in added if t["id"] >= len(tokens)}
    for i in range(len(tokens), vocab):
        t = extra.get(i)
        tokens.append(t["content"] if t else f"[PAD{i}]")
        types.append(int(TokenType.CONTROL if t and t.get("special") else TokenType.USER_DEFINED))
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("smollm")
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    w.add_bos_token_id(1)
    w.add_eos_token_id(vocab - 1 if vocab > 49152 else 2)
    w.add_pad_token_id(2)

    def f16(a: Any) -> Any:
        return a.astype(np.float16)

    embed = get(prefix + "embed_tokens.weight")
    w.add_tensor("token_embd.weight", f16(embed))
    for i in range(n_layers):
        p = f"{prefix}layers.{i}."
        w.add_tensor(f"blk.{i}.attn_norm.weight", get(p + "input_layernorm.weight").astype(np.float32))
        w.add_tensor(f"blk.{i}.attn_q.weight", f16(_permute(get(p + "self_attn.q_proj.weight"), n_head)))
        w.add_tensor(f"blk.{i}.attn_k.weight", f16(_permute(get(p + "self_attn.k_proj.weight"), n_kv)))
        w.add_tensor(f"blk.{i}.attn_v.weight", f16(get(p + "self_attn.v_proj.weight")))
        w.add_tensor(f"blk.{i}.attn_output.weight", f16(get(p + "self_attn.o_proj.weight")))
        w.add_tensor(
            f"blk.{i}.ffn_norm.weight", get(p + "post_attention_layernorm.weight").astype(np.float32)
        )
        w.add_tensor(f"blk.{i}.ffn_gate.weight", f16(get(p + "mlp.gate_proj.weight")))
        w.add_tensor(f"blk.{i}.ffn_up.weight", f16(get(p + "mlp.up_proj.weight")))
        w.add_tensor(f"blk.{i}.ffn_down.weight", f16(get(p + "mlp.down_proj.weight")))
    w.add_tensor("output_norm.weight", get(prefix + "norm.weight").astype(np.float32))
    if "lm_head.weight" in where:
        w.add_tensor("output.weight", f16(get("lm_head.weight")))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    os.replace(tmp, dst)
    return dst


def quantize(f16: Path, kind: str, log: Any = None) -> Path:
    """Q8_0 / Q4_K_M GGUF next to `f16`, made by llama.cpp's own quantizer (cached)."""
    dst = f16.with_name(f16.name.replace("-F16.gguf", f"-{kind}.gguf"))
    if not dst.is_file():
        tmp = dst.with_suffix(".tmp")
        out = log if log is not None else subprocess.DEVNULL
        subprocess.run(
            [str(LLAMA_PY), str(WORKER), "quantize", str(f16), str(tmp), kind],
            check=True,
            stdout=out,
            stderr=out,
        )
        os.replace(tmp, dst)
    return dst


def gguf_files(ckpt: Path, kinds: list[str], log: Any = None) -> dict[str, Path]:
    """{kind: path} for `kinds` (F16 / Q8_0 / Q4_K_M) of the checkpoint's text decoder, built once, cached."""
    f16 = CACHE / "gguf" / f"{ckpt.name}-F16.gguf"
    f16.parent.mkdir(parents=True, exist_ok=True)
    if not f16.is_file():
        write_f16_gguf(ckpt, f16)
    return {k: (f16 if k == "F16" else quantize(f16, k, log)) for k in kinds}
