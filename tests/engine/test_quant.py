"""Weight-only quantization (engine.quant): accuracy against the unquantized engine, load-time quantization.

Random weights make a poor accuracy test: a random LM's 49k logits are near-Gaussian, so its top-1 sits within
a hair of the runner-up and any perturbation flips it, while a trained LM's top-1 stands clear for most tokens.
So the text model here is *trained* (200 steps, ~5 s) on a synthetic language (two weighted successors per token,
plus copies from two tokens back that need attention): its weights have trained statistics and its top-1 stands
clear like a real LM's (mean top-1 probability ~0.7; 1% of positions within 0.17 nats of the runner-up). A
language with more near-ties (p .6/.25/.15: 5% of positions within 0.07 nats) gives int8 0.98-0.99 and int4
0.97-0.99, every flip at a near-tie: agreement measures the model's ties as much as the quantizer. The vision tower keeps random (PyTorch default) init and is
judged by feature cosine, which has no argmax to flip.
"""

from __future__ import annotations

import copy
import functools
import logging
import weakref
from collections.abc import Iterator
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from smolgate.engine import onednn, quant
from smolgate.engine.config import ModelConfig, TextConfig, VisionConfig
from smolgate.engine.model.smolvlm import SmolVLM

VOCAB, POSITIONS = 512, 512
STEPS, LR = 200, 3e-3
TEXT = TextConfig(
    vocab_size=VOCAB,
    hidden_size=128,
    intermediate_size=320,  # > 256: gate/up (and lm_head) take oneDNN's int8 GEMM where it exists
    num_layers=2,
    num_heads=4,
    num_kv_heads=2,
    head_dim=32,
    rms_norm_eps=1e-5,
    rope_theta=10000.0,
    max_position_embeddings=1024,
)  # every projection has N % 64 == 0, so all take the int4 kernel (lm_head is int8 by design)
VISION = VisionConfig(
    hidden_size=64, intermediate_size=128, num_layers=2, num_heads=4, image_size=32, patch_size=8
)
VLM = ModelConfig("smolvlm", TEXT, VISION, scale_factor=2, image_token_id=VOCAB - 1)
TIED = ModelConfig("llama", replace(TEXT, tie_word_embeddings=True))
CKPT_PREFIX = {
    "text.": "model.text_model.",
    "vision.": "model.vision_model.",
    "connector.": "model.connector.",
}


def sample_language(batch: int, length: int, seed: int) -> torch.Tensor:
    """Token t+1: successor A of token t (p .7), successor B (p .2), or a copy of token t-1 (p .1)."""
    succ = torch.randint(0, VOCAB, (VOCAB, 2), generator=torch.Generator().manual_seed(1234))
    g = torch.Generator().manual_seed(seed)
    seq = torch.randint(0, VOCAB, (batch, length), generator=g)
    choice = torch.multinomial(torch.tensor([0.7, 0.2, 0.1]), batch * length, True, generator=g)
    choice = choice.view(batch, length)
    for t in range(2, length):
        nxt = succ[seq[:, t - 1], choice[:, t].clamp(max=1)]
        seq[:, t] = torch.where(choice[:, t] == 2, seq[:, t - 2], nxt)
    return seq


@functools.cache
def trained(cfg: ModelConfig = VLM, steps: int = STEPS) -> SmolVLM:
    threads = torch.get_num_threads()
    # tiny matmuls: a second thread only adds sync cost (and stalls on a busy machine)
    torch.set_num_threads(1)
    try:
        torch.manual_seed(0)
        model = SmolVLM(cfg)
        opt = torch.optim.AdamW(model.parameters(), lr=LR)
        for step in range(steps):
            seq = sample_language(16, 65, seed=step)
            # no caches passed: fresh ones for this pass, so no autograd history across steps
            logits = model(model.text.embed_tokens(seq[:, :-1]), last_only=False)
            loss = F.cross_entropy(logits.flatten(0, 1), seq[:, 1:].flatten())
            opt.zero_grad()
            loss.backward()
            opt.step()
    finally:
        torch.set_num_threads(threads)
    return model.eval().requires_grad_(False)


def logits_all(model: SmolVLM, tokens: torch.Tensor, *, step_by_step: bool) -> torch.Tensor:
    """[T, V] logits for every position: one prefill pass, or one decode step per token (KV cache)."""
    if not step_by_step:
        return model(model.text.embed_tokens(tokens), last_only=False)[0]
    caches = model.text.new_caches(1, tokens.shape[1], torch.float32)
    steps = (
        model(model.text.embed_tokens(tokens[:, i : i + 1]), i, caches=caches) for i in range(tokens.shape[1])
    )
    return torch.cat(list(steps))


@pytest.mark.parametrize("mode", ["int8", "int8-dynamic", "int4"])
@pytest.mark.parametrize("step_by_step", [True, False], ids=["decode-kernel", "prefill-dense"])
def test_quantized_agrees_with_unquantized(mode: quant.QuantMode, step_by_step: bool) -> None:
    ref_model = trained()
    qmodel = quant.quantize_model(copy.deepcopy(ref_model), mode)
    kinds = {m.bits for m in qmodel.modules() if isinstance(m, quant.QuantLinear)}
    assert kinds == ({4, 8} if mode == "int4" else {8})  # int4 layers + the int8 lm_head
    tokens = sample_language(1, POSITIONS, seed=10_000)
    with torch.no_grad():
        ref = logits_all(ref_model, tokens, step_by_step=False)
        got = logits_all(qmodel, tokens, step_by_step=step_by_step)
    agree = (ref.argmax(-1) == got.argmax(-1)).float().mean().item()
    cosine = F.cosine_similarity(ref, got, dim=-1)
    print(f"{mode}: top-1 agreement {agree:.4f}, cosine mean {cosine.mean():.5f} min {cosine.min():.5f}")
    assert agree >= 0.98
    assert cosine.min().item() >= 0.99
    # the model is trained, not degenerate: confident but not certain, like a real LM
    assert 0.3 < ref.softmax(-1).amax(-1).mean().item() < 0.8


@pytest.mark.parametrize("mode", ["int8", "int4"])
def test_vision_features_survive_quantization(mode: quant.QuantMode) -> None:
    model = trained()
    qmodel = quant.quantize_model(copy.deepcopy(model), mode)
    assert isinstance(qmodel.vision.encoder.layers[0].mlp.fc1, quant.QuantLinear)  # type: ignore[union-attr]
    pixels = torch.randn(
        3, 3, VISION.image_size, VISION.image_size, generator=torch.Generator().manual_seed(0)
    )
    with torch.no_grad():
        ref, got = model.encode_images(pixels), qmodel.encode_images(pixels)
    assert F.cosine_similarity(ref.flatten(1), got.flatten(1), dim=-1).min().item() >= 0.99


def checkpoint_tensors(
    model: SmolVLM, log: list[tuple[str, weakref.ref[torch.Tensor]]]
) -> Iterator[tuple[str, torch.Tensor]]:
    """Yield the model's tensors under checkpoint names, each a fresh fp32 copy (as a safetensors read is).

    Before making the next tensor, check that no earlier tensor bound for a quantized layer is still alive:
    the loader holds at most one full-precision layer at a time.
    """
    quantized = {
        n
        for n, m in quant.quantize_model(copy.deepcopy(model), "int8").named_modules()
        if isinstance(m, quant.QuantLinear)
    }
    tied = model.cfg.text.tie_word_embeddings
    for name, tensor in model.state_dict().items():
        if tied and name == "lm_head.weight":
            continue  # tied checkpoints store the embedding only
        alive = [n for n, ref in log if ref() is not None and n.removesuffix(".weight") in quantized]
        assert not alive, f"full-precision layers still alive while loading: {alive}"
        prefix = next((p for p in CKPT_PREFIX if name.startswith(p)), "")
        copy_ = tensor.clone()
        log.append((name, weakref.ref(copy_)))
        yield (CKPT_PREFIX[prefix] + name[len(prefix) :] if prefix else name), copy_
        del copy_


@pytest.mark.parametrize("cfg", [VLM, TIED], ids=["vlm", "tied-text"])
@pytest.mark.parametrize("mode", ["int8", "int8-dynamic", "int4"])
def test_loader_equals_quantize_after_load(cfg: ModelConfig, mode: quant.QuantMode) -> None:
    torch.manual_seed(1)
    model = SmolVLM(cfg).eval().requires_grad_(False)
    if cfg.text.tie_word_embeddings:
        model.lm_head.weight = model.text.embed_tokens.weight
    expected = quant.quantize_model(copy.deepcopy(model), mode).state_dict()
    log: list[tuple[str, weakref.ref[torch.Tensor]]] = []
    with torch.device("meta"):
        skeleton = SmolVLM(cfg)
    loaded = quant.load_quantized(skeleton, checkpoint_tensors(model, log), mode).state_dict()
    assert len(log) >= 10
    assert loaded.keys() == expected.keys()
    for name, tensor in expected.items():
        assert not loaded[name].is_meta, name
        assert torch.equal(loaded[name], tensor), name
    # the packed layers own their memory: none of them views a full-precision source tensor
    assert all(ref() is None for n, ref in log if n.endswith(("proj.weight", "fc1.weight")))


def test_build_quantized_model_runs_and_rejects_incomplete_checkpoints() -> None:
    model = trained()
    log: list[tuple[str, weakref.ref[torch.Tensor]]] = []
    built = quant.build_quantized_model(VLM, checkpoint_tensors(model, log), "int4")
    tokens = sample_language(1, 32, seed=5)
    with torch.no_grad():
        ref = logits_all(model, tokens, step_by_step=False)
        got = logits_all(built, tokens, step_by_step=True)
    assert (ref.argmax(-1) == got.argmax(-1)).float().mean().item() >= 0.9

    def partial() -> Iterator[tuple[str, torch.Tensor]]:
        for name, tensor in checkpoint_tensors(model, []):
            if "layers.1.mlp.down_proj" not in name:
                yield name, tensor
            del tensor

    with torch.device("meta"):
        skeleton = SmolVLM(VLM)
    with pytest.raises(KeyError, match="down_proj"):
        quant.load_quantized(skeleton, partial(), "int8")


def test_skip_and_fallback() -> None:
    model = quant.quantize_model(copy.deepcopy(trained()), "int4", skip=["vision.*"])
    assert isinstance(model.vision.encoder.layers[0].mlp.fc1, torch.nn.Linear)  # type: ignore[union-attr]
    assert model.lm_head.bits == 8  # type: ignore[union-attr]
    # a shape the int4 kernel cannot take (K=4304 % 32, like so400m's fc2) is stored as int8
    assert isinstance(quant.quantize_linear_weight(torch.randn(64, 4304), "int4"), quant.PackedInt8)
    assert quant.quantize_model(model, "none") is model
    with pytest.raises(ValueError):
        quant.quantize_model(model, "int3")  # type: ignore[arg-type]


@pytest.mark.parametrize("mode", ["int8", "int4"])
def test_dequantized_weight_is_what_the_kernel_computes_with(mode: quant.QuantMode) -> None:
    """The dense path (prefill, the vision encoder's fused GEMMs) must use the decode kernel's own weight values,
    or a prompt's logits would drift from decoding the same tokens one by one."""
    torch.manual_seed(6)
    n, k = 256, 128
    layer = quant.QuantLinear(quant.quantize_linear_weight(torch.randn(n, k), mode), None, k)
    eye = torch.eye(k, dtype=torch.bfloat16)  # one row per input channel: the kernel's output is W^T
    step = layer.dense_from - 1  # below dense_from: the kernel
    with torch.no_grad():
        kernel = torch.cat([layer._weight_only(eye[i : i + step]) for i in range(0, k, step)])
    assert torch.equal(kernel, layer.dequantized().t())


@pytest.mark.parametrize("mode", ["int8", "int4"])
def test_dense_path_in_slices_of_output_channels(
    mode: quant.QuantMode, monkeypatch: pytest.MonkeyPatch
) -> None:
    """From `dense_from` rows a weight-only layer dequantizes and runs dense GEMMs, a slice of output channels at a
    time (DENSE_CHUNK weights); each slice must carry its own rows' scales (int4: 64-row packing blocks, [K/g, N]
    scales) for the result to equal the whole dequantized weight's."""
    torch.manual_seed(5)
    n, k = 320, 128
    layer = quant.QuantLinear(quant.quantize_linear_weight(torch.randn(n, k), mode), None, k)
    monkeypatch.setattr(quant, "DENSE_CHUNK", 128 * k)  # slices of 128, 128 and 64 channels
    x = torch.randn(layer.dense_from, k, dtype=torch.bfloat16)
    slices: list[int] = []
    dense = layer._dense

    def spy(x2: torch.Tensor, start: int, end: int) -> torch.Tensor:
        slices.append(end - start)
        return dense(x2, start, end)

    monkeypatch.setattr(layer, "_dense", spy)
    with torch.no_grad():
        got = layer(x).float()
        below = layer(x[:-1]).float()  # one row fewer: the weight-only kernel
    assert slices == [128, 128, 64]
    ref = x.float() @ layer.dequantized().float().t()
    tol = ref.abs().max().item() / 100  # bf16 products and output rounding; a wrong slice is off by O(max)
    torch.testing.assert_close(got, ref, rtol=0, atol=tol)
    torch.testing.assert_close(below, ref[:-1], rtol=0, atol=tol)


@pytest.mark.skipif(not onednn.onednn_int8_works(), reason="no oneDNN int8 GEMM in this torch build / CPU")
def test_int8_on_onednn_matches_weight_only_and_rows_do_not_depend_on_the_batch(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # on a CPU where oneDNN has only its reference loops the engine would not use it: check its values anyway
    monkeypatch.setattr(quant, "onednn_int8_available", lambda: True)
    torch.manual_seed(3)
    w, x = torch.randn(384, 256) * 0.05, torch.randn(8, 256, dtype=torch.bfloat16)
    wide = quant.QuantLinear(quant.quantize_linear_weight(w, "int8"), None, 256, dynamic=True)
    narrow = quant.QuantLinear(quant.quantize_linear_weight(w[:256], "int8"), None, 256, dynamic=True)
    plain = quant.QuantLinear(quant.quantize_linear_weight(w, "int8"), None, 256)
    assert plain._onednn is None  # int8 is weight-only unless asked for int8-dynamic
    assert wide._onednn is not None  # N >= 257: oneDNN, with the plain weight freed
    assert narrow._onednn is None  # N <= 256: oneDNN's slow path, so the weight-only kernel
    with torch.no_grad():
        dynamic = wide(x).float()
        weight_only = torch._weight_int8pack_mm(x, wide.int8_weight(), wide.scales).float()
        rows = torch.cat([wide(x[i : i + 1]) for i in range(8)]).float()
    assert F.cosine_similarity(dynamic, weight_only, dim=-1).min().item() >= 0.999
    assert torch.equal(dynamic, rows)  # per-row activation scales and exact int32 sums: batch-independent
    # the weight round-trips out of oneDNN's layout (state_dict, packed())
    assert torch.equal(wide.state_dict()["weight"], quant.quantize_linear_weight(w, "int8").weight)


@pytest.mark.parametrize("mode", ["int8", "int8-dynamic", "int4"])
def test_embedding_table_is_int8_and_looks_up_the_same_rows(mode: quant.QuantMode) -> None:
    model = copy.deepcopy(trained())
    dense = model.text.embed_tokens.weight.detach().clone()
    quant.quantize_model(model, mode)
    table = model.text.embed_tokens
    assert isinstance(table, quant.QuantEmbedding) and table.weight.dtype == torch.int8
    assert model.dtype == torch.float32  # activations keep the model's dtype
    ids = torch.tensor([[0, 5, VOCAB - 1, 5]])
    rows = table(ids)
    assert rows.dtype == torch.float32 and rows.shape == (1, 4, TEXT.hidden_size)
    torch.testing.assert_close(rows[0], dense[ids[0]], rtol=0, atol=dense.abs().max().item() / 127)


def test_tied_embedding_is_int8_only_with_a_quantized_head() -> None:
    torch.manual_seed(1)
    model = SmolVLM(TIED).eval().requires_grad_(False)
    model.lm_head.weight = model.text.embed_tokens.weight
    quant.quantize_model(model, "int8")
    assert isinstance(model.text.embed_tokens, quant.QuantEmbedding)
    assert isinstance(model.lm_head, quant.QuantLinear)
    model = SmolVLM(TIED).eval().requires_grad_(False)
    model.lm_head.weight = model.text.embed_tokens.weight
    quant.quantize_model(
        model, "int8", skip=["lm_head"]
    )  # the head keeps reading the float table: so does the lookup
    assert isinstance(model.text.embed_tokens, torch.nn.Embedding)
    assert model.lm_head.weight is model.text.embed_tokens.weight


def test_streamed_bf16_checkpoint_gives_bf16_lookups() -> None:
    """The skeleton is built on meta in fp32; the lookup dtype must come from the tensors loaded into it."""
    torch.manual_seed(1)
    model = SmolVLM(VLM).eval().requires_grad_(False).to(torch.bfloat16)
    with torch.device("meta"):
        skeleton = SmolVLM(VLM)
    loaded = quant.load_quantized(skeleton, checkpoint_tensors(model, []), "int8")
    assert loaded.dtype == torch.bfloat16
    assert loaded.text.embed_tokens(torch.tensor([[3, 4]])).dtype == torch.bfloat16


def test_int8_dynamic_runs_weight_only_where_onednn_has_no_kernel_for_the_cpu(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Where oneDNN falls back to its reference loops (hundreds of times slower: an AMD EPYC with AVX-512 VNNI
    under torch 2.13), int8-dynamic layers run the weight-only kernel instead, and the log says why."""
    if not onednn.onednn_int8_works():
        pytest.skip(
            "no oneDNN int8 GEMM in this torch build / CPU: the weight-only path is the only one anyway"
        )
    torch.manual_seed(4)
    w, x = torch.randn(384, 256) * 0.05, torch.randn(3, 256, dtype=torch.bfloat16)
    plain = quant.QuantLinear(quant.quantize_linear_weight(w, "int8"), None, 256)
    for ratio, on_onednn in ((3.0, True), (450.0, False)):
        onednn.onednn_int8_available.cache_clear()
        monkeypatch.setattr(onednn, "_onednn_vs_weight_only", lambda r=ratio: r)
        with caplog.at_level(logging.WARNING, logger="smolgate.engine.onednn"):
            layer = quant.QuantLinear(quant.quantize_linear_weight(w, "int8"), None, 256, dynamic=True)
        assert (layer._onednn is not None) == on_onednn
        assert ("no int8 GEMM kernel for this CPU" in caplog.text) == (not on_onednn)
        if not on_onednn:
            with torch.no_grad():
                assert torch.equal(layer(x), plain(x))  # the weight-only kernel, the same values
    onednn.onednn_int8_available.cache_clear()  # the next caller measures this CPU again
