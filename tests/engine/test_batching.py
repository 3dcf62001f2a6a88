"""Continuous batching: every request in a shared batch gets what it would get alone.

Most tests drive `Scheduler.step()` by hand, so join / cancel / release points are exact (no timing); one test
goes through `Engine.stream` from several threads. The reference for each request is the single-sequence loop
(`oracle.generate`, one sequence on its own cache). A batch runs other GEMM shapes than one sequence alone, so the
logits differ in the last fp32 bits: each greedy reference is checked to have no near-tie (numerics.py), which
makes "the same tokens" hold on any CPU.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
import torch
from checkpoints import make_checkpoint
from numerics import assert_answer_is_decisive, assert_greedy_is_decisive
from oracle import generate as oracle_generate

from smolgate.engine import generate as gen
from smolgate.engine.delivery import ChunkStream
from smolgate.engine.engine import ChatMessage, Engine, GenerationParams, TextPart
from smolgate.engine.sampling import Sampler
from smolgate.engine.scheduler import Limits, QueueFull, Scheduler, TooLongForCache


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Engine:
    torch.set_num_threads(2)
    path, _ = make_checkpoint("smollm2-text", tmp_path_factory.mktemp("batching"))
    return Engine.load(str(path))


def prompt(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(100, 5000, (1, n), generator=g)


def reference(engine: Engine, ids: torch.Tensor, **kw: Any) -> gen.GenerationResult:
    """The request alone; greedy ones checked to be decisive (no near-tie a batch's rounding could flip)."""
    sampler = kw.setdefault("sampler", Sampler())
    result = oracle_generate(engine.model, engine.tokenizer, ids, **kw)
    if sampler.generator is None:
        penalty = sampler.penalty or 1.0
        assert_greedy_is_decisive(engine.model, ids, result.token_ids, repetition_penalty=penalty)
    return result


def run(sched: Scheduler, steps: int | None = None) -> None:
    """Step until idle (or `steps` times); fails instead of hanging."""
    for i in range(10_000):
        if (steps is not None and i >= steps) or not sched.busy:
            return
        sched.step()
    raise AssertionError("scheduler did not finish")


def submit(sched: Scheduler, ids: torch.Tensor, **kw: Any) -> ChunkStream:
    """`Scheduler.submit` read through a blocking stream (as `Engine.stream` does)."""
    return ChunkStream.of(lambda sink: sched.submit(ids, sink=sink, **kw))


def result(stream: ChunkStream) -> gen.GenerationResult:
    return gen.collect(stream)  # every chunk is queued once the request finished


def same(a: gen.GenerationResult, b: gen.GenerationResult) -> None:
    assert (a.token_ids, a.text, a.finish_reason, a.stop_sequence) == (
        b.token_ids,
        b.text,
        b.finish_reason,
        b.stop_sequence,
    )
    assert (a.prompt_tokens, a.completion_tokens) == (b.prompt_tokens, b.completion_tokens)


def test_batched_greedy_equals_unbatched_with_joins_cancels_and_stops(engine: Engine) -> None:
    ids = {
        name: prompt(n, i)
        for i, (name, n) in enumerate([("a", 5), ("b", 17), ("c", 40), ("d", 12), ("e", 9)])
    }
    free_d = reference(engine, ids["d"], max_tokens=20)
    free_c = reference(engine, ids["c"], max_tokens=25)
    specs: dict[str, dict[str, Any]] = {
        "a": {"max_tokens": 30},
        "b": {"max_tokens": 4},  # finishes while c is still being prefilled (its row is compacted away)
        "c": {"max_tokens": 25, "stop_token_ids": [free_c.token_ids[9]]},
        "d": {"max_tokens": 20, "stop": [free_d.text[8:12]]},  # joins mid-way, ends on a stop string
        "e": {"max_tokens": 40, "sampler": Sampler(repetition_penalty=3.0)},  # cancelled mid-way
    }
    refs = {k: reference(engine, ids[k], **spec) for k, spec in specs.items()}
    assert refs["d"].finish_reason == "stop_sequence" and refs["c"].finish_reason == "stop"

    sched = Scheduler(engine.model, engine.tokenizer, Limits(step_tokens=8))
    cancel_e = threading.Event()
    streams = {
        k: submit(sched, ids[k], **{"sampler": Sampler(), **specs[k]}, cancel=cancel_e if k == "e" else None)
        for k in "abce"
    }
    run(sched, steps=12)
    streams["d"] = submit(sched, ids["d"], sampler=Sampler(), **specs["d"])
    run(sched, steps=3)
    cancel_e.set()
    run(sched)

    assert sched.peak_batch >= 3  # they really shared decode steps
    got = {k: result(s) for k, s in streams.items()}
    for k in "abcd":
        same(got[k], refs[k])
    e = got["e"]
    assert e.finish_reason == "cancelled" and 0 < e.completion_tokens < refs["e"].completion_tokens
    assert e.token_ids == refs["e"].token_ids[: len(e.token_ids)]


def test_a_burst_of_short_prompts_is_prefilled_in_one_pass_and_joins_the_batch(engine: Engine) -> None:
    first = prompt(6, 20)
    ids = [prompt(n, 21 + i) for i, n in enumerate([7, 12, 3, 9])]
    # the second ends at its first token, so the rows after it move down to close the gap
    specs: list[dict[str, Any]] = [
        {"max_tokens": 10},
        {"max_tokens": 1},
        {"max_tokens": 12},
        {"max_tokens": 8},
    ]
    refs = [reference(engine, ids[i], **specs[i]) for i in range(4)]
    ref_first = reference(engine, first, max_tokens=20)

    sched = Scheduler(engine.model, engine.tokenizer, Limits(step_tokens=64))
    lead = submit(sched, first, sampler=Sampler(), max_tokens=20)
    run(sched, steps=3)  # decoding alone by now
    assert sched.prefill_passes == 1
    streams = [submit(sched, ids[i], sampler=Sampler(), **specs[i]) for i in range(4)]
    run(sched, steps=1)
    assert sched.prefill_passes == 2  # four prompts, one forward
    run(sched)

    assert sched.peak_batch == 4  # the lead and the three that did not finish at once
    same(result(lead), ref_first)
    for stream, ref in zip(streams, refs, strict=True):
        same(result(stream), ref)


def test_a_long_prompt_is_prefilled_in_equal_chunks(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    """20 positions with 8-position chunks: 7 + 7 + 6, not 8 + 8 + 4 (a short last chunk would cost a long one's
    time where weight-only layers only go dense from `dense_from` rows); the result is the unchunked one."""
    ids = prompt(20, 50)
    ref = reference(engine, ids, max_tokens=6)
    sched = Scheduler(engine.model, engine.tokenizer, Limits(step_tokens=8))
    widths: list[int] = []
    forward = engine.model.forward

    def spy(x: torch.Tensor, *args: Any, **kw: Any) -> torch.Tensor:
        if x.shape[1] > 1:  # a prefill pass, not a decode step
            widths.append(x.shape[1])
        return forward(x, *args, **kw)

    monkeypatch.setattr(engine.model, "forward", spy)
    stream = submit(sched, ids, sampler=Sampler(), max_tokens=6)
    run(sched)
    assert widths == [7, 7, 6]
    same(result(stream), ref)


def test_seeded_sampling_does_not_depend_on_batch_company(engine: Engine) -> None:
    ids = prompt(11, 42)

    def sampled(seed: int) -> Sampler:
        return Sampler(temperature=1.0, top_p=0.9, top_k=50, seed=seed)

    alone = reference(engine, ids, sampler=sampled(7), max_tokens=16)
    sched = Scheduler(engine.model, engine.tokenizer)
    company = [submit(sched, prompt(n, n), sampler=Sampler(), max_tokens=20) for n in (3, 25)]
    other = submit(sched, ids, sampler=sampled(8), max_tokens=16)
    run(sched, steps=4)  # joins a running batch
    mine = submit(sched, ids, sampler=sampled(7), max_tokens=16)
    run(sched)
    assert result(mine).token_ids == alone.token_ids
    assert result(other).token_ids != alone.token_ids  # the seed matters (so the check above can fail)
    assert all(result(s).completion_tokens > 0 for s in company)


class OnlyToken:
    """A constraint that allows one token id; done after `length` tokens."""

    def __init__(self, token: int, length: int, vocab: int) -> None:
        self.token, self.length, self.vocab = token, length, vocab
        self.seen: list[int] = []
        self.shapes: set[tuple[int, ...]] = set()

    @property
    def done(self) -> bool:
        return len(self.seen) >= self.length

    def mask_logits(self, logits: torch.Tensor) -> torch.Tensor:
        self.shapes.add(tuple(logits.shape))
        out = torch.full_like(logits, float("-inf"))
        out[self.token] = logits[self.token]
        return out

    def advance(self, token_id: int) -> None:
        self.seen.append(token_id)


def test_constraint_applies_to_its_own_row_only(engine: Engine) -> None:
    vocab = engine.model.cfg.text.vocab_size
    free = [prompt(n, n) for n in (6, 14)]
    refs = [reference(engine, ids, max_tokens=12) for ids in free]
    constraint = OnlyToken(1234, length=5, vocab=vocab)
    sched = Scheduler(engine.model, engine.tokenizer)
    plain = [submit(sched, ids, sampler=Sampler(), max_tokens=12) for ids in free]
    run(sched, steps=2)
    constrained = submit(sched, prompt(9, 3), sampler=Sampler(), max_tokens=12, constraint=constraint)
    run(sched)
    out = result(constrained)
    assert out.token_ids == [1234] * 5 and out.finish_reason == "stop"  # `done` ends the request
    assert constraint.seen == [1234] * 5 and constraint.shapes == {(vocab,)}  # one 1-D row per call
    for stream, ref in zip(plain, refs, strict=True):
        same(result(stream), ref)


class Faulty(OnlyToken):
    def advance(self, token_id: int) -> None:
        raise ValueError("token not allowed here")


def test_a_failing_constraint_fails_its_own_request_only(engine: Engine) -> None:
    ids = prompt(8, 77)
    ref = reference(engine, ids, max_tokens=10)
    sched = Scheduler(engine.model, engine.tokenizer)
    good = submit(sched, ids, sampler=Sampler(), max_tokens=10)
    bad = submit(sched, prompt(5, 78), sampler=Sampler(), max_tokens=10, constraint=Faulty(7, 3, 0))
    run(sched)
    with pytest.raises(ValueError, match="not allowed"):
        result(bad)
    same(result(good), ref)


def test_admission_bounds_queue_and_cancel_while_queued(engine: Engine) -> None:
    ids = [prompt(4 + i, 100 + i) for i in range(6)]
    refs = [reference(engine, x, max_tokens=10) for x in ids]
    sched = Scheduler(engine.model, engine.tokenizer, Limits(max_slots=2, max_queue=3))
    cancel_last = threading.Event()
    streams = [submit(sched, ids[i], sampler=Sampler(), max_tokens=10) for i in range(3)]
    run(sched, steps=1)  # short prompts: both slots fill in one iteration (and decode together); one waits
    assert sched.peak_batch == 2 and sched.decode_steps == 1
    streams += [submit(sched, ids[i], sampler=Sampler(), max_tokens=10) for i in (3, 4)]
    with pytest.raises(QueueFull, match="queue full"):
        submit(sched, ids[5], sampler=Sampler(), max_tokens=10)
    streams[4].close()  # its caller walks away while it is queued: the next step drops it
    run(sched, steps=1)
    cancel_last.set()  # cancelled before it ever gets a slot
    streams.append(submit(sched, ids[5], sampler=Sampler(), max_tokens=10, cancel=cancel_last))
    run(sched)
    assert sched.peak_batch == 2
    for s, ref in zip(streams[:4], refs, strict=False):
        same(result(s), ref)
    last = result(streams[5])
    assert (last.finish_reason, last.completion_tokens, last.text) == ("cancelled", 0, "")


def test_kv_token_budget_bounds_the_batch(engine: Engine) -> None:
    sched = Scheduler(engine.model, engine.tokenizer, Limits(max_slots=8, kv_tokens=512))
    with pytest.raises(TooLongForCache, match="budget"):
        submit(sched, prompt(300, 1), sampler=Sampler(), max_tokens=300)
    ids = [prompt(5 + i, 200 + i) for i in range(4)]
    refs = [reference(engine, x, max_tokens=8) for x in ids]
    streams = [submit(sched, x, sampler=Sampler(), max_tokens=8) for x in ids]
    run(sched)
    assert sched.peak_batch == 2  # 256-position rows: two fit in 512 tokens, the others waited their turn
    for s, ref in zip(streams, refs, strict=True):
        same(result(s), ref)


def test_closing_a_stream_frees_its_row(engine: Engine) -> None:
    a, b = prompt(7, 5), prompt(13, 6)
    ref_b = reference(engine, b, max_tokens=20)
    sched = Scheduler(engine.model, engine.tokenizer)
    sa, sb = (
        submit(sched, a, sampler=Sampler(), max_tokens=20),
        submit(sched, b, sampler=Sampler(), max_tokens=20),
    )
    run(sched, steps=5)
    first = next(sa)
    assert first.finish_reason is None
    sa.close()
    with pytest.raises(StopIteration):
        next(sa)
    run(sched, steps=1)
    assert len(sched._rows) == 1  # a's row was released at the next step
    run(sched)
    same(result(sb), ref_b)


def test_a_failing_sink_abandons_its_own_request_only(engine: Engine) -> None:
    """A sink that raises (an event loop that closed under it) must not fail the batch: its request leaves at
    the next step and the others finish as they would alone."""
    ids = prompt(8, 91)
    ref = reference(engine, ids, max_tokens=10)
    sched = Scheduler(engine.model, engine.tokenizer)
    calls: list[object] = []

    def broken(item: object) -> None:
        calls.append(item)
        raise RuntimeError("Event loop is closed")

    good = submit(sched, ids, sampler=Sampler(), max_tokens=10)
    sched.submit(prompt(6, 92), sampler=Sampler(), max_tokens=10, sink=broken)
    for _ in range(10):  # until it had its first chunk
        if calls:
            break
        sched.step()
    assert calls
    sched.step()
    assert sched._rows == [] or (len(sched._rows) == 1 and sched._rows[0].sink is not broken)  # it left
    run(sched)
    same(result(good), ref)
    assert len(calls) == 2  # its first chunk and its "cancelled" end; nothing after


def test_engine_streams_from_threads_share_decode_steps(engine: Engine) -> None:
    messages: list[Callable[[], list[ChatMessage]]] = [
        lambda i=i: [ChatMessage("user", [TextPart(f"Story number {i}, please." * (i + 1))])]
        for i in range(4)
    ]
    params = GenerationParams(max_tokens=32)
    serial = [engine.generate(m(), params) for m in messages]
    for m, alone in zip(messages, serial, strict=True):
        assert_answer_is_decisive(engine, m(), alone.token_ids)
    engine.scheduler.peak_batch = 0
    streams = [engine.stream(m(), params) for m in messages]  # all queued before anyone reads
    results: list[gen.GenerationResult | None] = [None] * 4

    def read(i: int) -> None:
        results[i] = gen.collect(streams[i])

    threads = [threading.Thread(target=read, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert engine.scheduler.peak_batch >= 2
    for got, ref in zip(results, serial, strict=True):
        assert got is not None
        same(got, ref)


def test_quantized_engine_loads_and_batches(tmp_path_factory: pytest.TempPathFactory) -> None:
    from smolgate.engine import quant

    path, _ = make_checkpoint("smollm2-text", tmp_path_factory.mktemp("quant"))
    engine = Engine.load(str(path), quant="int8")
    assert any(isinstance(m, quant.QuantLinear) for m in engine.model.modules())
    ids = [prompt(n, n) for n in (6, 15)]
    solo = [reference(engine, x, max_tokens=10) for x in ids]
    sched = Scheduler(engine.model, engine.tokenizer)
    streams = [submit(sched, x, sampler=Sampler(), max_tokens=10) for x in ids]
    run(sched)
    assert sched.peak_batch == 2
    for s, ref in zip(streams, solo, strict=True):
        same(result(s), ref)
    with pytest.raises(ValueError, match="quant"):
        Engine.load(str(path), quant="int3")
