"""The text decoder's GemvLinear (engine.kernels.gemv): a few bf16 rows through torch.mv or W @ x^T give F.linear's
values, and a bf16 model's decode steps take those paths (the fused projections and lm_head included).

"F.linear's values" to bf16 rounding: both sum in fp32 and round once, but which kernel runs (and in what order it
adds) is oneDNN's choice by CPU. With AMX or AVX-512 bf16 they agreed bit for bit; on AVX-512 without native
bf16 one of 3072 outputs was an ulp off."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from numerics import assert_bf16_close

from smolgate.engine import inductor
from smolgate.engine.kernels.gemv import GemvLinear as Linear


@pytest.mark.parametrize(("n", "k", "bias"), [(960, 576, False), (3072, 576, False), (200, 130, True)])
def test_few_rows_give_f_linears_values(n: int, k: int, bias: bool) -> None:
    dtype = torch.bfloat16
    torch.manual_seed(n + k)
    layer = Linear(k, n, bias=bias).to(dtype)
    with torch.inference_mode():
        for shape in [(1, k), (1, 1, k), (k,)]:
            x = torch.randn(shape, dtype=dtype)
            got = layer(x)
            assert got.shape == (*shape[:-1], n) and got.dtype == dtype
            assert_bf16_close(got, F.linear(x, layer.weight, layer.bias))
        for rows in (0, 2, 3, 8, 16, 17, 40):  # W @ x^T up to FEW_ROWS (without bias), F.linear from there on
            x = torch.randn(1, rows, k, dtype=dtype)
            assert_bf16_close(layer(x), F.linear(x, layer.weight, layer.bias))


def test_compiled_gemv_path_matches_eager_without_graph_breaks() -> None:
    torch.manual_seed(1)
    layer = Linear(576, 960, bias=True).to(torch.bfloat16)
    # fullgraph: a graph break raises; the engine's options (inductor.py: the vector width pinned)
    compiled = torch.compile(layer, dynamic=True, fullgraph=True, options=inductor.options())
    with torch.inference_mode():
        for rows in (1, 3):
            x = torch.randn(rows, 576, dtype=torch.bfloat16)
            ref = F.linear(x.float(), layer.weight.float(), layer.bias.float())
            torch.testing.assert_close(compiled(x).float(), ref, rtol=0.02, atol=0.02)


def test_a_bf16_model_decodes_one_row_through_gemv(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    from checkpoints import make_checkpoint

    from smolgate.engine.engine import ChatMessage, Engine, GenerationParams, TextPart

    path, _ = make_checkpoint("smollm2-text", tmp_path_factory.mktemp("gemv"))
    engine = Engine.load(str(path), dtype="bfloat16")
    layers = [m for m in engine.model.text.modules() if isinstance(m, torch.nn.Linear)]
    assert layers and all(type(m) is Linear for m in [*layers, engine.model.lm_head])
    calls: list[int] = []
    mv = torch.mv

    def counting(w: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        calls.append(w.shape[0])
        return mv(w, v)

    monkeypatch.setattr(torch, "mv", counting)
    out = engine.generate([ChatMessage("user", [TextPart("hello")])], GenerationParams(max_tokens=3))
    steps = out.completion_tokens - 1  # the first token comes from the prefill: many rows, F.linear ...
    assert (
        steps >= 1 and calls[0] == engine.model.lm_head.out_features
    )  # ... but lm_head on its last row only
    assert len(calls) == 1 + steps * (len(layers) + 1)  # then every projection and lm_head, each step
    engine.close()


def test_a_bf16_model_decodes_a_batch_with_the_weight_on_the_left(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    from checkpoints import make_checkpoint

    from smolgate.engine.engine import ChatMessage, Engine, GenerationParams, TextPart

    path, _ = make_checkpoint("smollm2-text", tmp_path_factory.mktemp("gemm-t"))
    engine = Engine.load(str(path), dtype="bfloat16")
    weights = {id(m.weight) for m in engine.model.modules() if isinstance(m, Linear)}
    batch_rows: list[int] = []
    mm = torch.mm

    def counting(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        if id(a) in weights:
            batch_rows.append(b.shape[1])
        return mm(a, b)

    monkeypatch.setattr(torch, "mm", counting)
    params = GenerationParams(max_tokens=6)
    streams = [engine.stream([ChatMessage("user", [TextPart(f"story {i}")])], params) for i in range(2)]
    produced = [sum(len(c.token_ids) for c in s) for s in streams]
    assert produced == [6, 6]
    assert set(batch_rows) == {2}  # two-row decode steps (and the lm_head of the two prompts' joint prefill)
    assert len(batch_rows) >= 4 * len(weights)  # every projection and lm_head, in each shared step
    engine.close()
