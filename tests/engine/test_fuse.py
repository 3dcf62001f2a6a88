"""Fused projections (engine.kernels.fuse): one q/k/v GEMM and one gate/up GEMM per layer give the same logits."""

from __future__ import annotations

import copy

import pytest
import torch
from test_quant import POSITIONS, logits_all, sample_language, trained
from test_vision_fused import cos_min
from torch import nn

from smolgate.engine import quant
from smolgate.engine.kernels.fuse import concat_linears, fuse_projections


@pytest.mark.parametrize("mode", ["none", "int8", "int8-dynamic", "int4"])
def test_fused_model_gives_the_same_logits(mode: quant.QuantMode) -> None:
    model = quant.quantize_model(copy.deepcopy(trained()), mode)
    fused = quant.quantize_model(
        copy.deepcopy(trained()), mode
    )  # (a oneDNN-packed model cannot be deep-copied)
    vision_layers = model.cfg.vision.num_layers if model.cfg.vision is not None else 0
    assert fuse_projections(fused) == 2 * model.cfg.text.num_layers + vision_layers
    attn, mlp = fused.text.layers[0].self_attn, fused.text.layers[0].mlp
    assert attn.qkv_proj is not None and not hasattr(attn, "q_proj")
    assert mlp.gate_up_proj is not None and not hasattr(mlp, "gate_proj")
    tokens = sample_language(1, POSITIONS // 4, seed=7)
    with torch.no_grad():
        ref = logits_all(model, tokens, step_by_step=True)
        got = logits_all(fused, tokens, step_by_step=True)
        ref_prefill = logits_all(model, tokens, step_by_step=False)
        got_prefill = logits_all(fused, tokens, step_by_step=False)
    # every kernel computes each output column by itself, but a wider GEMM may be another kernel (chosen by shape
    # and CPU) that adds in another order: the same logits to the rounding of the layers' compute dtype (fp32, or
    # bf16 activations in the quantized kernels, where an ulp here and there moves logits by < 2**-8 of their
    # scale). A wrong split (q for k, gate for up) moves them by their whole scale.
    rel = 1e-5 if mode == "none" else 2.0**-6
    for fused_logits, plain_logits in ((got, ref), (got_prefill, ref_prefill)):
        scale = plain_logits.abs().max().item()
        torch.testing.assert_close(fused_logits, plain_logits, rtol=0, atol=rel * scale)


def test_mixed_kinds_are_left_alone() -> None:
    dense = nn.Linear(64, 64, bias=False)
    int4 = quant.QuantLinear(quant.quantize_linear_weight(torch.randn(64, 64), "int4"), None, 64)
    int8 = quant.QuantLinear(quant.quantize_linear_weight(torch.randn(64, 64), "int8"), None, 64)
    assert concat_linears([dense, int4]) is None
    assert concat_linears([int4, int8]) is None
    with_bias = nn.Linear(64, 64)
    assert concat_linears([dense, with_bias]) is None
    both = concat_linears([with_bias, nn.Linear(64, 32)])
    assert isinstance(both, nn.Linear) and both.weight.shape == (96, 64) and both.bias is not None
    x = torch.randn(3, 64)
    torch.testing.assert_close(both(x)[:, :64], with_bias(x))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_the_served_model_is_the_reference_with_its_kernels_swapped(
    dtype: torch.dtype, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """engine/load.py builds the reference model, then swaps in every kernel module (kernels/): the same
    parameters in faster modules, the same logits (to the compute dtype's rounding, as above)."""
    from checkpoints import make_checkpoint

    from smolgate.engine import load
    from smolgate.engine.config import ModelConfig
    from smolgate.engine.kernels import encoder, fuse, gemv
    from smolgate.engine.model.smolvlm import build_model
    from smolgate.engine.weights import SafetensorsCheckpoint, read_json

    path, _ = make_checkpoint("smolvlm2-256m", tmp_path_factory.mktemp("served"))
    ckpt = SafetensorsCheckpoint(path)
    cfg = ModelConfig.from_hf_config(read_json(path, "config.json"), ckpt.shapes())
    reference = build_model(cfg, ckpt.tensors(dtype))
    served = load.build(cfg, ckpt.tensors(dtype), None)
    assert served.vision is not None and reference.vision is not None
    text_layer, vision_layer = served.text.layers[0], served.vision.encoder.layers[0]
    assert isinstance(text_layer.self_attn, fuse.FusedQKV) and isinstance(text_layer.mlp, fuse.FusedGateUp)
    assert type(text_layer.self_attn.qkv_proj) is gemv.GemvLinear and type(served.lm_head) is gemv.GemvLinear
    assert isinstance(vision_layer, encoder.FusedEncoderLayer)
    assert isinstance(vision_layer.self_attn, fuse.FusedVisionQKV)
    assert isinstance(served.vision.encoder, encoder.AlignedEncoder)
    assert (
        type(reference.text.layers[0].self_attn.q_proj) is nn.Linear
    )  # the reference is left as it was built
    ids = torch.randint(0, cfg.text.vocab_size, (1, 24), generator=torch.Generator().manual_seed(3))
    pixels = torch.randn(2, 3, cfg.vision.image_size, cfg.vision.image_size, dtype=dtype)  # type: ignore[union-attr]
    with torch.inference_mode():
        want = reference(reference.text.embed_tokens(ids), last_only=False).float()
        got = served(served.text.embed_tokens(ids), last_only=False).float()
        want_img, got_img = reference.vision(pixels).float(), served.vision(pixels).float()
    rel = 1e-5 if dtype == torch.float32 else 2.0**-6
    torch.testing.assert_close(got, want, rtol=0, atol=rel * want.abs().max().item())
    if dtype == torch.float32:  # fp32 takes none of the encoder's bf16 paths
        torch.testing.assert_close(got_img, want_img, rtol=0, atol=rel * want_img.abs().max().item())
    else:  # fused GEMM epilogues and padded attention round differently, as in test_vision_fused.py
        assert cos_min(got_img, want_img) >= 0.999
