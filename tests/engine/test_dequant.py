"""Dequantizing for the dense paths (engine.dequant): inductor's code per shape must give the eager ops' exact
bf16 values, fall back to them where inductor fails, and be compiled at load (aside, while a server answers) for every shape a model meets."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
import torch

from smolgate.engine import dequant, quant


@pytest.fixture
def fresh_cache(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[tuple[str, int, int, int], object]]:
    """An empty per-shape cache for this test (restored after), inductor not known broken."""
    cache: dict[tuple[str, int, int, int], object] = {}
    monkeypatch.setattr(dequant, "_compiled", cache)
    monkeypatch.setattr(dequant, "_broken", False)
    yield cache


@pytest.mark.parametrize(
    ("n", "k", "group"), [(64, 64, 32), (192, 256, 64), (128, 512, 128), (320, 512, 256)]
)
def test_compiled_unpack_equals_eager_bit_for_bit(n: int, k: int, group: int, fresh_cache: dict) -> None:
    torch.manual_seed(n + k)
    packed = quant.quantize_linear_weight(torch.randn(n, k) * 3 + 0.5, "int4", group_size=group)
    assert isinstance(packed, quant.PackedInt4)
    with torch.inference_mode():
        got = dequant.unpack_int4_t(packed.weight, packed.scales_zeros, group)
        again = dequant.unpack_int4_t(packed.weight, packed.scales_zeros, group)
    assert list(fresh_cache) == [("int4", n, k // 2, group)]  # compiled once, then reused
    want = dequant.unpack_int4_eager(packed.weight, packed.scales_zeros, group)
    assert got.dtype == torch.bfloat16 and got.shape == (k, n)
    assert torch.equal(got, want) and torch.equal(again, want)


@pytest.mark.parametrize(("n", "k"), [(64, 48), (4304 // 4, 1152 // 4)])
def test_compiled_int8_dequantization_equals_eager_bit_for_bit(n: int, k: int, fresh_cache: dict) -> None:
    torch.manual_seed(n)
    packed = quant.quantize_linear_weight(torch.randn(n, k) * 2, "int8")
    assert isinstance(packed, quant.PackedInt8)
    layer = quant.QuantLinear(packed, None, k)
    with torch.inference_mode():
        got = layer.dequantized()
    assert list(fresh_cache) == [("int8", n, k, 0)]
    assert got.dtype == torch.bfloat16 and torch.equal(got, dequant.int8_eager(packed.weight, packed.scales))


def test_a_failed_compile_falls_back_to_eager_and_the_eager_threshold(
    fresh_cache: dict, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A host without a C++ compiler: inductor raises on the first call; the unpack still answers (eager), says
    so once, and int4 layers go dense only from the row count where eager unpacking pays."""

    def no_compiler(fn: object, **kwargs: object) -> object:
        def run(*args: object) -> object:
            raise RuntimeError("InvalidCxxCompiler: sk-secret-in-a-path")

        return run

    monkeypatch.setattr(torch, "compile", no_compiler)
    packed = quant.quantize_linear_weight(torch.randn(128, 64), "int4")
    assert isinstance(packed, quant.PackedInt4)
    assert quant.dense_rows(4, 4096) == quant.INT4_DENSE_ROWS
    with caplog.at_level(logging.WARNING, logger=dequant.__name__), torch.inference_mode():
        got = dequant.unpack_int4_t(packed.weight, packed.scales_zeros, 32)
        dequant.unpack_int4_t(packed.weight, packed.scales_zeros, 32)
    assert torch.equal(got, dequant.unpack_int4_eager(packed.weight, packed.scales_zeros, 32))
    assert not dequant.compiled() and not fresh_cache
    assert (
        quant.dense_rows(4, 4096) == quant.INT4_EAGER_DENSE_ROWS
        and quant.dense_rows(8, 64) == quant.INT8_DENSE_ROWS
    )
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "eager" in warnings[0].getMessage()
    assert "sk-secret" not in warnings[0].getMessage()  # the exception type only, never its text


def test_int4_goes_dense_from_fewer_rows_the_wider_its_input() -> None:
    """Narrow inputs make small, inefficient GEMMs, so the dense path needs more rows to pay for the unpacking:
    measured crossovers ~32 rows at K = 2048 (2.2B), ~44 at 960 (500M), ~90 at 576 (256M)."""
    widths = [8192, 2048, 1536, 960, 576, 64]
    rows = [quant.dense_rows(4, k) for k in widths]
    assert rows == sorted(rows) and rows[0] == rows[1] == quant.INT4_DENSE_ROWS
    assert all(r * k >= quant.INT4_DENSE_WORK for r, k in zip(rows, widths, strict=True))
    assert (
        32 <= quant.dense_rows(4, 960) <= 80 and 80 <= quant.dense_rows(4, 576) <= quant.INT4_EAGER_DENSE_ROWS
    )


def test_warm_up_compiles_every_slice_shape_once(fresh_cache: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    """After warm-up, a dense forward of every int4 layer (prefill) finds its shapes compiled."""
    monkeypatch.setattr(quant, "DENSE_CHUNK", 128 * 64)  # slices of 128 channels at K = 64, 64 at K = 96
    torch.manual_seed(2)
    shapes = [(320, 64), (192, 64), (128, 96), (320, 64)]  # 128+128+64, 128+64, 64+64, 128+128+64
    model = torch.nn.Sequential(*(torch.nn.Linear(k, n, bias=False) for n, k in shapes))
    quant.quantize_model(model, "int4")
    layers = [m for m in model.modules() if isinstance(m, quant.QuantLinear)]
    assert all(m.group_size for m in layers)
    with torch.inference_mode():
        count = quant.warm_up_dense(model)
    want = {("int4", 128, 32, 32), ("int4", 64, 32, 32), ("int4", 64, 48, 32)}  # channels, K/2 bytes, group
    assert count == len(want) and set(fresh_cache) == want
    compiled = dict(fresh_cache)
    with torch.inference_mode():
        for layer in layers:
            x = torch.randn(layer.dense_from, layer.in_features, dtype=torch.bfloat16)
            ref = x.float() @ dequant.unpack_int4_eager(layer.weight, layer.scales, 32).float()
            torch.testing.assert_close(layer(x).float(), ref, rtol=0, atol=ref.abs().max().item() / 100)
    assert fresh_cache == compiled  # nothing compiled while "serving"


def test_an_int4_engine_compiles_its_shapes_aside_at_load_and_answers_meanwhile(
    fresh_cache: dict, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The shapes compile on a thread of their own, started at load: a request that comes meanwhile prefills with
    the eager unpacking, and gets the tokens it gets once they are compiled; no request compiles anything."""
    from checkpoints import make_checkpoint

    from smolgate.engine.engine import ChatMessage, Engine, GenerationParams, TextPart

    path, _ = make_checkpoint("smollm2-text", tmp_path_factory.mktemp("int4"))
    monkeypatch.setattr(quant, "INT4_DENSE_WORK", 16 * 64)  # the tiny model's layers go dense from 16-32 rows
    engine = Engine.load(str(path), quant="int4")
    warming = engine.scheduler.warming
    assert warming is not None
    int4 = [m for m in engine.model.modules() if isinstance(m, quant.QuantLinear) and m.group_size]
    assert int4
    dense_from = max(m.dense_from for m in int4)
    words = " ".join(f"w{i}" for i in range(dense_from))  # a prompt the dense path prefills
    ask = [ChatMessage("user", [TextPart(words)])]
    first = engine.generate(ask, GenerationParams(max_tokens=4))  # most likely while the shapes compile
    assert first.prompt_tokens >= dense_from and first.completion_tokens > 0
    warming.join(120)
    want = {("int4", b - a, m.in_features // 2, m.group_size) for m in int4 for a, b in m.dense_slices()}
    assert set(fresh_cache) == want and not dequant.warming()
    loaded = dict(fresh_cache)
    again = engine.generate(ask, GenerationParams(max_tokens=4))
    assert again.token_ids == first.token_ids  # the compiled unpacking gives the eager one's exact values
    assert fresh_cache == loaded
    engine.close()
