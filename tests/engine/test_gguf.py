"""The packaged SmolLM2-135M GGUF: our loader against transformers' GGUF loading, plus an end-to-end answer."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from fixtures import shared_gguf_parsing
from numerics import assert_decisive

from smolgate.engine.engine import ChatMessage, Engine, GenerationParams, TextPart, packaged_gguf_path
from smolgate.engine.gguf_loader import hf_tensor_name, unpermute_rows

QUESTION = "What is the capital of France?"
SAMPLES = [
    "Hello world",
    "x = 12345 + 0.5",
    "日本語のテキスト",
    "emoji 🙂👍🏽 ok",
    '{"a": [1, 2], "b": null}',
    "  spaces\n\ttabs",
]


@pytest.fixture(scope="module")
def engine() -> Engine:
    torch.set_num_threads(2)
    with shared_gguf_parsing():  # the reference below parses the same file: once per process (fixtures.py)
        return Engine.load(str(packaged_gguf_path()))


@pytest.fixture(scope="module")
def reference() -> tuple[Any, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = packaged_gguf_path()
    with shared_gguf_parsing():  # the same loading, minus transformers' repeated parsing (fixtures.py)
        model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32)
        return model.eval(), AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)


def llama_cpp_permute(w: torch.Tensor, n_heads: int) -> torch.Tensor:
    """The permutation llama.cpp's converter applies to q_proj / k_proj rows (written from its description)."""
    return w.reshape(n_heads, 2, w.shape[0] // n_heads // 2, *w.shape[1:]).transpose(1, 2).reshape(w.shape)


def test_unpermute_inverts_the_converter_permutation() -> None:
    w = torch.arange(6 * 8 * 5, dtype=torch.float32).reshape(6 * 8, 5)  # 6 heads of head_dim 8
    assert torch.equal(unpermute_rows(llama_cpp_permute(w, 6), 6), w)
    assert not torch.equal(llama_cpp_permute(w, 6), w)


def test_tensor_names_map_to_hf_llama() -> None:
    assert hf_tensor_name("blk.3.attn_q.weight") == "model.layers.3.self_attn.q_proj.weight"
    assert hf_tensor_name("blk.0.ffn_norm.weight") == "model.layers.0.post_attention_layernorm.weight"
    assert hf_tensor_name("token_embd.weight") == "model.embed_tokens.weight"
    assert hf_tensor_name("output.weight") == "lm_head.weight"
    assert hf_tensor_name("rope_freqs.weight") is None


def test_config_and_metadata(engine: Engine) -> None:
    text = engine.model.cfg.text
    assert (text.hidden_size, text.num_layers, text.num_heads, text.num_kv_heads) == (576, 30, 9, 3)
    assert text.tie_word_embeddings and engine.model.lm_head.weight is engine.model.text.embed_tokens.weight
    assert engine.context_length == 8192 and not engine.supports_images
    assert engine.tokenizer.eos_token_ids == (2, 0)  # <|im_end|> (metadata), <|endoftext|> (as llama.cpp)


def test_tokenizer_matches_transformers_gguf_tokenizer(engine: Engine, reference: tuple[Any, Any]) -> None:
    _, ref_tok = reference
    for text in [*SAMPLES, "<|im_start|>user\nhi<|im_end|>\n"]:
        ids = engine.tokenizer.encode(text)
        assert ids == ref_tok(text, add_special_tokens=False).input_ids, text
        assert engine.tokenizer.decode(ids, skip_special_tokens=False) == text


def test_chat_template_renders_like_transformers(engine: Engine, reference: tuple[Any, Any]) -> None:
    _, ref_tok = reference
    conversations = [
        [{"role": "user", "content": QUESTION}],
        [
            {"role": "system", "content": "Answer in French."},
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Bonjour"},
            {"role": "user", "content": "Ça va ?"},
        ],
    ]
    for messages in conversations:
        for gen_prompt in (True, False):
            expected = ref_tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=gen_prompt)
            assert engine.tokenizer.apply_chat_template(messages, gen_prompt) == expected


def test_first_token_logits_correlate_with_transformers(engine: Engine, reference: tuple[Any, Any]) -> None:
    ref_model, _ = reference
    messages = [ChatMessage("user", [TextPart(QUESTION)])]
    ids, _ = engine._prepare(messages)
    with torch.inference_mode():
        ours = engine.model(engine.model.embed(ids))[0].double()
        theirs = ref_model(input_ids=ids).logits[0, -1].double()
    corr = torch.corrcoef(torch.stack([ours, theirs]))[0, 1].item()
    assert corr >= 0.999, corr
    # the same first token, and theirs leads its runner-up by more than two fp32 computations differ
    assert_decisive(theirs[None], [int(ours.argmax())])


def test_greedy_answer_names_paris(engine: Engine) -> None:
    prompt = engine.tokenizer.apply_chat_template([{"role": "user", "content": QUESTION}])
    assert prompt.startswith("<|im_start|>system\n") and prompt.endswith("<|im_start|>assistant\n")
    result = engine.generate([ChatMessage("user", [TextPart(QUESTION)])], GenerationParams(max_tokens=24))
    assert "Paris" in result.text, result.text
    assert result.finish_reason == "stop" and result.completion_tokens == len(result.token_ids)
