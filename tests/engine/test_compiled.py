"""Compiled decode step (Limits.compile): same tokens as eager, and every compile happens at load, none while serving."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator

import pytest
import torch
from checkpoints import make_checkpoint
from numerics import assert_answer_is_decisive
from torch._dynamo.utils import counters

from smolgate.engine import compiled as compiled_mod
from smolgate.engine import generate as gen
from smolgate.engine import onednn, quant
from smolgate.engine.engine import ChatMessage, Engine, GenerationParams, TextPart
from smolgate.engine.kernels.gemv import FEW_ROWS
from smolgate.engine.scheduler import Limits


def compiled_graphs() -> int:
    return int(counters["stats"]["unique_graphs"])


@pytest.fixture(scope="module")
def engines(tmp_path_factory: pytest.TempPathFactory) -> tuple[Engine, Engine, int]:
    path, _ = make_checkpoint("smollm2-text", tmp_path_factory.mktemp("compiled"))
    eager = Engine.load(str(path))
    before = compiled_graphs()
    compiled = Engine.load(str(path), limits=Limits(compile=True))
    yield eager, compiled, compiled_graphs() - before
    eager.close()
    compiled.close()


def test_compiled_engine_gives_eager_tokens_and_compiles_only_at_load(
    engines: tuple[Engine, Engine, int],
) -> None:
    eager, compiled, at_load = engines
    assert at_load == 3  # one row in a one-row cache, one row in a larger cache, several rows
    # a long request first (its cache, and the RoPE table, grow past 256 positions), then short ones together
    # (the cache shrinks back while the RoPE table stays long), then one alone in that multi-row cache
    long = [ChatMessage("user", [TextPart("Tell a long story. " * 120)])]
    messages = [[ChatMessage("user", [TextPart(f"Tell me story {i}. " * (5 + 5 * i))])] for i in range(3)]
    params = GenerationParams(max_tokens=24)
    expected_long = eager.generate(long, params)
    expected = [eager.generate(m, params) for m in messages]
    # inductor's fused norms sum in another order than eager: equal tokens need every step's winner to stand clear
    for m, answer in zip([long, *messages], [expected_long, *expected], strict=True):
        assert_answer_is_decisive(eager, m, answer.token_ids)
    serving = compiled_graphs()

    assert compiled.generate(long, params).token_ids == expected_long.token_ids  # alone: a 1-row cache
    assert expected_long.prompt_tokens > 300
    streams = [compiled.stream(m, params) for m in messages]  # together: batched rows
    results: list[gen.GenerationResult | None] = [None] * len(messages)

    def read(i: int) -> None:
        results[i] = gen.collect(streams[i])

    threads = [threading.Thread(target=read, args=(i,)) for i in range(len(messages))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert compiled.scheduler.peak_batch >= 2
    assert [r.token_ids for r in results if r is not None] == [e.token_ids for e in expected]
    assert (
        compiled.generate(messages[1], params).token_ids == expected[1].token_ids
    )  # alone in a larger cache
    assert compiled_graphs() == serving  # no request paid for a compile


def step_logits(engine: Engine) -> torch.Tensor:
    """Two batched decode steps of three rows on fresh caches, through the engine's own step function."""

    def step() -> torch.Tensor:
        model = engine.model
        caches = model.text.new_caches(3, 64)
        model.text.ensure_rope(64)
        tokens, positions = torch.tensor([[5], [77], [901]]), torch.tensor([0, 1, 2])
        fn = engine.scheduler._step_fn
        fn(tokens, positions, 3, caches)
        return fn(tokens, positions + 1, 4, caches)

    return engine.run(step)


def test_compiled_step_matches_eager_logits(engines: tuple[Engine, Engine, int]) -> None:
    eager, compiled, _ = engines
    torch.testing.assert_close(step_logits(compiled), step_logits(eager), rtol=1e-4, atol=1e-4)


Guards = list[list[tuple[str, str]]]


@pytest.fixture(scope="module")
def w8a8(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Engine, Engine, Guards, Guards]]:
    """An int8-dynamic model, eager and compiled, and per compiled graph the guards kept and dropped. A second
    model compiled in the process (after `engines`): dynamo shares compiled code by function, so guards must tell
    this model's graphs from the dense one's."""
    kept: Guards = []
    dropped: Guards = []
    real = compiled_mod._skip_weight_guards

    def record(entries: list) -> list[bool]:
        keep = real(entries)
        kept.append([(e.guard_type, e.name) for e, k in zip(entries, keep, strict=True) if k])
        dropped.append([(e.guard_type, e.name) for e, k in zip(entries, keep, strict=True) if not k])
        return keep

    path, _ = make_checkpoint("smollm2-text", tmp_path_factory.mktemp("compiled-w8a8"))
    eager = Engine.load(str(path), quant="int8-dynamic")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(compiled_mod, "_skip_weight_guards", record)
        compiled = Engine.load(str(path), quant="int8-dynamic", limits=Limits(compile=True))
    yield eager, compiled, kept, dropped
    eager.close()
    compiled.close()


def test_decode_guards_check_the_inputs_and_layer_structure_not_the_weights(
    w8a8: tuple[Engine, Engine, Guards, Guards],
) -> None:
    """Each layer call evaluates its graph's guards. A loaded model's weights never change, so the guards on them
    are dropped; those on the inputs (which pick the graph) and on the layer's structure (one graph serves every
    layer, so the structure is what tells two layers apart) stay."""
    _, _, kept, dropped = w8a8
    assert len(kept) == 3  # the three decode graphs
    for keep, drop in zip(kept, dropped, strict=True):
        assert drop and all(kind == "TENSOR_MATCH" and name.startswith("layer.") for kind, name in drop)
        assert all("._parameters[" in name or "._buffers[" in name for _, name in drop)
        for arg in ("x", "positions", "cache.k", "cache.v", "cos"):
            assert any(kind == "TENSOR_MATCH" and name == arg for kind, name in keep), arg
        on_layer = {kind for kind, name in keep if name.startswith("layer")}
        assert {"TYPE_MATCH", "CONSTANT_MATCH"} <= on_layer


def test_compiled_int8_dynamic_keeps_the_onednn_op(w8a8: tuple[Engine, Engine, Guards, Guards]) -> None:
    # inductor cannot lower oneDNN's int8 GEMM on a weight that is not a frozen constant: quant wraps it in an
    # opaque custom op while compiling
    eager, compiled, _, _ = w8a8
    if onednn.onednn_int8_available():
        assert compiled.model.lm_head._onednn is not None  # the vocabulary-wide output layer runs W8A8
    # the narrow layers run the weight-only kernel on bf16 activations, and inductor's fused norms sum in another
    # order than eager: where that moves an activation across a bf16 (or int8) rounding boundary, the logits move
    # by a fraction of a percent of their scale (a wrong or missing op moves them by all of it)
    got, want = step_logits(compiled), step_logits(eager)
    torch.testing.assert_close(got, want, rtol=0, atol=2.0**-6 * want.abs().max().item())


def test_batches_past_the_dense_threshold_were_compiled_at_load(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    # weight-only int8 layers run their kernel below `dense_from` rows and dense GEMMs from there on: with that many
    # slots, a full batch takes a branch the three usual graphs never traced. Run after the module's other tests,
    # this is also the third compiled model in the process: past dynamo's default of 8 graphs per function
    # shared by all models (engine/compiled.py: isolate_recompiles)
    path, _ = make_checkpoint("smollm2-text", tmp_path_factory.mktemp("compiled-slots"))
    slots = quant.INT8_DENSE_ROWS
    before = compiled_graphs()
    engine = Engine.load(str(path), quant="int8", limits=Limits(compile=True, max_slots=slots))
    assert compiled_graphs() - before == 4
    engine.tokenizer.eos_token_ids = ()  # random weights: no request may end early, the batch must fill
    serving = compiled_graphs()
    messages = [[ChatMessage("user", [TextPart(f"Count to {i}.")])] for i in range(slots)]
    streams = [engine.stream(m, GenerationParams(max_tokens=4)) for m in messages]
    results = [gen.collect(s) for s in streams]
    assert engine.scheduler.peak_batch == slots
    assert all(r.completion_tokens == 4 for r in results)
    assert compiled_graphs() == serving  # no request paid for a compile
    engine.close()


def test_bf16_compiled_decode_compiles_only_at_load(tmp_path_factory: pytest.TempPathFactory) -> None:
    """bf16 steps run torch.mv (one row) and W @ x^T (up to FEW_ROWS rows) inside the compiled graphs
    (engine.kernels.gemv), F.linear past that: with more slots than FEW_ROWS, warm-up traces that batch too, and
    the graphs traced at load serve every request shape. (bf16 tokens are not compared with eager: inductor's
    fused norms round differently from eager bf16 ops, with or without these paths.)"""
    path, _ = make_checkpoint("smollm2-text", tmp_path_factory.mktemp("compiled-bf16"))
    slots = FEW_ROWS + 1
    before = compiled_graphs()
    compiled = Engine.load(str(path), dtype="bfloat16", limits=Limits(compile=True, max_slots=slots))
    assert compiled_graphs() - before == 4
    compiled.tokenizer.eos_token_ids = ()  # random weights: no request may end early, the batch must fill
    params = GenerationParams(max_tokens=6)
    serving = compiled_graphs()
    alone = compiled.generate([ChatMessage("user", [TextPart("Tell a story.")])], params)  # a one-row cache
    messages = [[ChatMessage("user", [TextPart(f"Tell story {i}. " * (1 + i % 4))])] for i in range(slots)]
    streams = [compiled.stream(m, params) for m in messages]  # together: a full batch, past FEW_ROWS
    results = [gen.collect(s) for s in streams]
    assert compiled.scheduler.peak_batch == slots
    assert alone.completion_tokens == 6 and all(r.completion_tokens == 6 for r in results)
    assert compiled_graphs() == serving
    compiled.close()


def test_background_compile_serves_at_once_then_switches_to_the_compiled_step(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """compile="background": the engine answers before anything is compiled (eager step), compiles the decode step
    on a thread of its own meanwhile, then decodes with it: the same tokens, and no request pays for a compile."""
    path, _ = make_checkpoint("smollm2-text", tmp_path_factory.mktemp("compiled-background"))
    engine = Engine.load(str(path), limits=Limits(compile="background"))
    warming = engine.scheduler.warming
    assert warming is not None and not engine.scheduler.compiled_step
    messages = [ChatMessage("user", [TextPart("Tell me a story. " * 12)])]
    params = GenerationParams(max_tokens=24)
    first = engine.generate(messages, params)  # served by the eager step, most likely while it compiles
    assert first.completion_tokens == 24 or first.finish_reason == "stop"
    assert_answer_is_decisive(engine, messages, first.token_ids)  # (a fused norm sums in another order)
    warming.join(300)
    assert not warming.is_alive() and engine.scheduler.compiled_step
    assert engine.scheduler._step_fn != engine.model.decode_rows
    serving = compiled_graphs()
    assert engine.generate(messages, params).token_ids == first.token_ids
    streams = [engine.stream(messages, params) for _ in range(2)]  # batched rows, through the adopted buffers
    assert [gen.collect(s).token_ids for s in streams] == [first.token_ids] * 2
    assert compiled_graphs() == serving
    engine.close()


def test_closing_an_engine_stops_its_background_compile(
    tmp_path_factory: pytest.TempPathFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """A closed engine leaves no compile behind: it would hold a core for nothing, and each torch.compile saves
    and restores torch's global random state under the process's other threads (a seeded model built meanwhile
    came out different)."""
    path, _ = make_checkpoint("smollm2-text", tmp_path_factory.mktemp("compiled-closed"))
    engine = Engine.load(str(path), limits=Limits(compile="background"))
    warming = engine.scheduler.warming
    assert warming is not None
    engine.close()
    assert not warming.is_alive()
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_base_rows_keep_the_compiled_graphs_with_an_adapter_loaded(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """Loading a LoRA adapter leaves the model's plain layers in place outside passes with adapter rows
    (lora/attach.py), so the base model's requests go on through the graphs compiled at load: no request waits
    for a recompile, and the adapter's own rows (eager) still get the adapter."""
    from test_lora_parity import TEXT, make_adapter

    tmp = tmp_path_factory.mktemp("compiled-lora")
    path, ref = make_checkpoint("smollm2-text", tmp / "base")
    engine = Engine.load(str(path), limits=Limits(compile=True))
    question = [ChatMessage("user", [TextPart("Say something about the sea, please.")])]
    params = GenerationParams(max_tokens=12)
    base = engine.generate(question, params).token_ids
    engine.load_adapter("a", make_adapter(ref, tmp / "a", 1, target_modules=TEXT, r=4, lora_alpha=8))
    graphs = compiled_graphs()
    assert engine.generate(question, params).token_ids == base
    streams = [engine.stream(question, params) for _ in range(2)]  # two base rows in one batch
    assert [gen.collect(s).token_ids for s in streams] == [base, base]
    assert engine.scheduler.compiled_step and compiled_graphs() == graphs
    assert engine.generate(question, GenerationParams(max_tokens=12, adapter="a")).token_ids != base
    engine.close()
