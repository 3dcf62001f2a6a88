"""Q4 GGUF tensors load as their own int4 codes (engine/gguf_blocks.py): the same weights as gguf's own
dequantisation, packed for the int4 kernel without re-quantizing, and the packaged model served that way predicts
like the file's weights in float32 (top-1 over 512 positions of real text)."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pytest
import torch
from fixtures import gguf_reader, shared_gguf_parsing
from gguf import GGMLQuantizationType, quants

from smolgate.engine import quant
from smolgate.engine.engine import packaged_gguf_path
from smolgate.engine.gguf_blocks import q4_codes
from smolgate.engine.gguf_loader import GGUFCheckpoint
from smolgate.engine.load import build
from smolgate.engine.model.smolvlm import SmolVLM

POSITIONS = 512
needs_int4 = pytest.mark.skipif(
    not quant.int4_supported(64, 64), reason="this CPU's int4 packing is not one dequant.py can unpack"
)


def _close_to_reference(codes: quant.Int4Codes, reference: np.ndarray) -> None:
    ref = torch.from_numpy(np.ascontiguousarray(reference))
    # (q - 8) * d + (m + 8 d) against gguf's d * q + m: the same value up to float32 rounding
    torch.testing.assert_close(codes.dense(), ref, rtol=1e-6, atol=1e-6 * float(ref.abs().max()))


def test_the_packaged_q4_1_tensors_read_as_gguf_dequantizes_them() -> None:
    tensors = [t for t in gguf_reader().tensors if t.tensor_type == GGMLQuantizationType.Q4_1]
    assert len(tensors) == 7 * 30
    for t in tensors[:14]:  # two layers: every projection shape
        codes = q4_codes(t.data, t.tensor_type, torch.float32)
        assert codes.codes.dtype == torch.uint8 and int(codes.codes.max()) <= 15 and codes.group_size == 32
        _close_to_reference(codes, quants.dequantize(t.data, t.tensor_type))


@pytest.mark.parametrize("kind", [GGMLQuantizationType.Q4_0, GGMLQuantizationType.Q4_1])
def test_both_block_formats_read_as_gguf_dequantizes_them(kind: GGMLQuantizationType) -> None:
    w = (
        np.random.default_rng(0).normal(0.1, 1.0, (128, 256)).astype(np.float32)
    )  # skewed: Q4_1's minimum matters
    blocks = quants.quantize(w, kind)
    _close_to_reference(q4_codes(blocks, kind, torch.float32), quants.dequantize(blocks, kind))


@needs_int4
def test_an_int4_layer_takes_the_codes_as_they_are() -> None:
    """The packed layer holds the file's codes and scales, only rounded to the kernel's bf16 scale and zero."""
    t = next(t for t in gguf_reader().tensors if t.name == "blk.0.ffn_down.weight")
    codes = q4_codes(t.data, t.tensor_type, torch.float32)
    layer = quant.QuantLinear(codes.packed(), None, codes.codes.shape[1])
    bf16 = quant.Int4Codes(
        codes.codes, codes.scale.bfloat16().float(), codes.zero.bfloat16().float(), torch.float32
    )
    # the unpacked weight is bf16 (the kernel's compute dtype): equal up to its rounding, 2^-8 relative
    torch.testing.assert_close(layer.dequantized().float(), bf16.dense(), rtol=2**-7, atol=1e-6)


@functools.cache
def _packaged(quant_mode: str, int4_codes: bool) -> SmolVLM:
    with shared_gguf_parsing():
        ckpt = GGUFCheckpoint(packaged_gguf_path())
        return build(ckpt.config, ckpt.tensors(torch.float32, int4_codes=int4_codes), quant_mode)  # type: ignore[arg-type]


def _text_tokens() -> torch.Tensor:
    with shared_gguf_parsing():
        tok = GGUFCheckpoint(packaged_gguf_path()).tokenizer()
    prose = (Path(__file__).parents[2] / "README.md").read_text()
    ids = tok.encode(prose)[:POSITIONS]
    assert len(ids) == POSITIONS
    return torch.tensor([ids])


@needs_int4
def test_the_packaged_model_in_int4_predicts_like_the_files_own_weights() -> None:
    tokens = _text_tokens()
    with torch.inference_mode():
        ref = _packaged("none", False)(_packaged("none", False).text.embed_tokens(tokens), last_only=False)[0]
        native = _packaged("int4", True)
        got = native(native.text.embed_tokens(tokens), last_only=False)[0]
    bits = {n: m.bits for n, m in native.named_modules() if isinstance(m, quant.QuantLinear)}
    # every Q4_1 projection kept its codes (q/k/v and gate/up fused at load: 4 layers a block); lm_head is int8
    assert bits.pop("lm_head") == 8 and len(bits) == 4 * 30 and set(bits.values()) == {4}
    same = ref.argmax(-1) == got.argmax(-1)
    logp = ref.log_softmax(-1)
    top2 = logp.topk(2, -1).values
    decisive = top2[:, 0] - top2[:, 1] > 0.5  # the file's top-1 leads its runner-up by more than 0.5 nats
    kl = (logp.exp() * (logp - got.log_softmax(-1))).sum(-1)
    print(
        f"int4 from the file's codes vs its float32 weights over {POSITIONS} positions: top-1 {same.float().mean():.4f}"
        f", where decisive ({decisive.float().mean():.2f} of them) {same[decisive].float().mean():.4f}"
        f", KL mean {kl.mean():.4f} nats"
    )
    # the flips are near-ties: most come from the int8 lm_head (one scale per row of the tied Q8_0 embedding)
    assert same.float().mean() >= 0.9 and same[decisive].float().mean() >= 0.99
    assert kl.mean() < 0.01
