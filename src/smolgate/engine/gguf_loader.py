"""Llama-architecture GGUF files (e.g. SmolLM2): config, dequantised tensors and tokenizer from one file.

Tensors are yielded under HF Llama names so the same `SmolVLM.load_weights` path loads them. llama.cpp's
converter permutes the rows of q_proj/k_proj (per head: interleaved rotary pairs instead of rotate-half halves);
we undo that so the model keeps the reference's rotate-half RoPE.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from gguf import GGMLQuantizationType
from gguf.quants import dequantize
from tokenizers import AddedToken, decoders, models, pre_tokenizers
from tokenizers import Tokenizer as HFTokenizer

from .config import ModelConfig, TextConfig
from .gguf_blocks import NATIVE_INT4, q4_codes
from .gguf_file import GGUFFile
from .quant import Int4Codes, Weight
from .tokenizer import Tokenizer

_LAYER_NAMES = {
    "attn_norm": "input_layernorm",
    "ffn_norm": "post_attention_layernorm",
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}
_GLOBAL_NAMES = {"token_embd": "model.embed_tokens", "output_norm": "model.norm", "output": "lm_head"}
_BLOCK = re.compile(r"blk\.(\d+)\.(\w+)\.(weight|bias)$")
_TOKEN_CONTROL, _TOKEN_USER_DEFINED = 3, 4
_END_TOKENS = frozenset(
    {"<|endoftext|>", "<|im_end|>", "<|eot_id|>", "<|end|>", "<end_of_turn>", "<end_of_utterance>"}
)
# llama.cpp pre-tokenizer names we can reproduce with HF pre-tokenizers (GPT-2 byte-level regex underneath).
_PRE_TOKENIZERS = {"smollm": True, "gpt2": False, "default": False}  # value: split digits individually


def hf_tensor_name(gguf_name: str) -> str | None:
    """GGUF tensor name -> HF Llama checkpoint name (None for tensors the model does not use)."""
    if m := _BLOCK.match(gguf_name):
        layer, kind, suffix = m.groups()
        return f"model.layers.{layer}.{_LAYER_NAMES[kind]}.{suffix}" if kind in _LAYER_NAMES else None
    base, _, suffix = gguf_name.rpartition(".")
    return f"{_GLOBAL_NAMES[base]}.{suffix}" if base in _GLOBAL_NAMES else None


def unpermute_rows(w: torch.Tensor, n_heads: int) -> torch.Tensor:
    """Invert llama.cpp's q/k permutation: per head rows (hd/2, 2) interleaved -> (2, hd/2) halves."""
    out_dim = w.shape[0]
    return w.reshape(n_heads, out_dim // n_heads // 2, 2, *w.shape[1:]).transpose(1, 2).reshape(w.shape)


class GGUFCheckpoint:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.file = GGUFFile(path)
        arch = self._field("general.architecture")
        if arch != "llama":
            raise ValueError(f"{path.name}: GGUF architecture {arch!r} is not supported (only llama)")
        self.config = self._config()

    def _field(self, key: str, default: Any = None) -> Any:
        return self.file.fields.get(key, default)

    def _config(self) -> ModelConfig:
        f = self._field
        names = {t.name for t in self.file.tensors}
        heads = int(f("llama.attention.head_count"))
        hidden = int(f("llama.embedding_length"))
        if "rope_freqs.weight" in names or f("llama.rope.scaling.type", "none") not in ("none", "linear"):
            raise ValueError(f"{self.path.name}: scaled RoPE variants are not supported")
        text = TextConfig(
            vocab_size=int(f("llama.vocab_size") or len(f("tokenizer.ggml.tokens"))),
            hidden_size=hidden,
            intermediate_size=int(f("llama.feed_forward_length")),
            num_layers=int(f("llama.block_count")),
            num_heads=heads,
            num_kv_heads=int(f("llama.attention.head_count_kv", heads)),
            head_dim=int(f("llama.rope.dimension_count", hidden // heads)),
            rms_norm_eps=float(f("llama.attention.layer_norm_rms_epsilon")),
            rope_theta=float(f("llama.rope.freq_base", 10000.0)),
            max_position_embeddings=int(f("llama.context_length")),
            tie_word_embeddings="output.weight" not in names,
        )
        return ModelConfig("llama", text, extra={"name": f("general.name")})

    def tensors(self, dtype: torch.dtype, *, int4_codes: bool = False) -> Iterator[tuple[str, Weight]]:
        """Dequantise one tensor at a time (to fp32, as gguf does), un-permute q/k, cast to `dtype`. With
        `int4_codes`, Q4_0 / Q4_1 tensors come as their own codes instead (gguf_blocks.py), for int4 layers."""
        text = self.config.text
        for t in self.file.tensors:
            name = hf_tensor_name(t.name)
            if name is None:
                continue
            heads = (
                text.num_heads
                if name.endswith("q_proj.weight")
                else text.num_kv_heads
                if name.endswith("k_proj.weight")
                else None
            )
            if int4_codes and t.tensor_type in NATIVE_INT4:
                c = q4_codes(t.data, t.tensor_type, dtype)
                if heads is not None:  # rows (output channels) move with their codes and group scales
                    rows = [unpermute_rows(x, heads) for x in (c.codes, c.scale, c.zero)]
                    c = Int4Codes(rows[0], rows[1], rows[2], dtype)
                yield name, c
                continue
            if t.tensor_type in (GGMLQuantizationType.F32, GGMLQuantizationType.F16):
                array = np.array(t.data, dtype=np.float32)  # a writable copy out of the mmap
            else:
                array = dequantize(t.data, t.tensor_type)
            w = torch.from_numpy(np.ascontiguousarray(array))
            if heads is not None:
                w = unpermute_rows(w, heads)
            yield name, w.to(dtype)

    def tokenizer(self) -> Tokenizer:
        f = self._field
        if f("tokenizer.ggml.model") != "gpt2":
            raise ValueError(f"{self.path.name}: only byte-level BPE ('gpt2') GGUF tokenizers are supported")
        pre = f("tokenizer.ggml.pre", "default")
        if pre not in _PRE_TOKENIZERS:
            raise ValueError(f"{self.path.name}: GGUF pre-tokenizer {pre!r} is not supported")
        tokens: list[str] = f("tokenizer.ggml.tokens")
        types: list[int] = f("tokenizer.ggml.token_type")
        merges = [tuple(m.split(" ", 1)) for m in f("tokenizer.ggml.merges")]
        hf = HFTokenizer(models.BPE(vocab={t: i for i, t in enumerate(tokens)}, merges=merges))
        byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False)
        if _PRE_TOKENIZERS[pre]:  # SmolLM2 splits every digit before the GPT-2 regex
            hf.pre_tokenizer = pre_tokenizers.Sequence(
                [pre_tokenizers.Digits(individual_digits=True), byte_level]
            )
        else:
            hf.pre_tokenizer = byte_level
        hf.decoder = decoders.ByteLevel()
        special = [
            t for t, kind in zip(tokens, types, strict=True) if kind in (_TOKEN_CONTROL, _TOKEN_USER_DEFINED)
        ]
        hf.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in special])

        def token(key: str) -> str | None:
            i = f(key)
            return tokens[int(i)] if i is not None else None

        eos_ids = [
            int(i)
            for k in ("tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id")
            if (i := f(k)) is not None
        ]
        # Like llama.cpp, also end a turn at the usual end-of-generation control tokens: a chat model that emits
        # <|endoftext|> instead of <|im_end|> would otherwise ramble on past it.
        eos_ids += [
            i
            for i, (t, kind) in enumerate(zip(tokens, types, strict=True))
            if kind == _TOKEN_CONTROL and t in _END_TOKENS
        ]
        return Tokenizer(
            hf,
            eos_token_ids=eos_ids,
            bos_token=token("tokenizer.ggml.bos_token_id"),
            eos_token=token("tokenizer.ggml.eos_token_id"),
            chat_template=f("tokenizer.chat_template"),
        )
