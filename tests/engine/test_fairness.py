"""Fair under load (#20 §2): a long prompt is prefilled in budgeted chunks between everyone else's steps.

The scheduler is stepped by hand, so every claim is a count of iterations, not a time: a running stream gets a
token every iteration while a long prompt is prefilled; a short prompt that arrives mid-way gets its first token
in the very next iteration; a cancelled prompt stops within one chunk and gives its memory back; and chunked
prefill gives the unchunked answer.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest
import torch
from checkpoints import make_checkpoint
from numerics import assert_greedy_is_decisive
from oracle import generate as oracle_generate
from oracle import new_caches

from smolgate.engine import generate as gen
from smolgate.engine.budget import attention_scale, chunk_size, prefill_cost
from smolgate.engine.config import TextConfig
from smolgate.engine.delivery import ChunkStream
from smolgate.engine.engine import Engine
from smolgate.engine.sampling import Sampler
from smolgate.engine.scheduler import Limits, Scheduler

LONG = 300  # prompt positions: ~20 chunks at the budget below
BUDGET = 24


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Engine:
    torch.set_num_threads(2)
    path, _ = make_checkpoint("smollm2-text", tmp_path_factory.mktemp("fairness"))
    return Engine.load(str(path))


def prompt(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(100, 5000, (1, n), generator=g)


def reference(engine: Engine, ids: torch.Tensor, max_tokens: int) -> gen.GenerationResult:
    """The request alone, prefilled in one pass; checked to have no near-tie a chunking could flip."""
    result = oracle_generate(engine.model, engine.tokenizer, ids, sampler=Sampler(), max_tokens=max_tokens)
    assert_greedy_is_decisive(engine.model, ids, result.token_ids)
    return result


class Recorder:
    """A sink that notes the iteration each chunk arrived in."""

    def __init__(self, sched: Scheduler) -> None:
        self.sched, self.items = sched, list[tuple[int, gen.GenerationChunk | BaseException]]()
        self.step = 0

    def sink(self, item: gen.GenerationChunk | BaseException) -> None:
        self.items.append((self.step, item))

    def first_step(self) -> int:
        return self.items[0][0]

    def tokens(self) -> list[int]:
        return [t for _, c in self.items if isinstance(c, gen.GenerationChunk) for t in c.token_ids]

    def finish(self) -> str | None:
        last = self.items[-1][1]
        return last.finish_reason if isinstance(last, gen.GenerationChunk) else None


def step(sched: Scheduler, *recorders: Recorder) -> None:
    for r in recorders:
        r.step += 1
    sched.step()


def submit(sched: Scheduler, ids: torch.Tensor, rec: Recorder, **kw: Any) -> None:
    sched.submit(ids, sampler=Sampler(), sink=rec.sink, **kw)


def test_streams_keep_decoding_and_a_newcomer_overtakes_a_long_prefill(engine: Engine) -> None:
    long_ids, short_ids, running_ids = prompt(LONG, 1), prompt(9, 2), prompt(6, 3)
    refs = {
        "long": reference(engine, long_ids, 5),
        "short": reference(engine, short_ids, 1),  # its first token ends it: no held-back text to wait for
        "running": reference(engine, running_ids, 40),
    }
    sched = Scheduler(engine.model, engine.tokenizer, Limits(step_tokens=BUDGET))
    recs = {k: Recorder(sched) for k in refs}
    submit(sched, running_ids, recs["running"], max_tokens=40)
    step(sched, *recs.values())
    assert sched.decode_steps == 1  # decoding

    submit(sched, long_ids, recs["long"], max_tokens=5)
    steps = 0
    while not recs["long"].items:  # the long prompt's prefill, chunk by chunk
        decoded = sched.decode_steps
        step(sched, *recs.values())
        steps += 1
        if recs["running"].finish() is None:
            assert sched.decode_steps == decoded + 1  # the running stream got its token this iteration too
        if steps == 3:
            submit(sched, short_ids, recs["short"], max_tokens=1)
            passes = sched.prefill_passes
            step(sched, *recs.values())
            steps += 1
            # the next iteration prefilled it (one pass, beside one chunk of the long prompt) and its first
            # token arrived: it did not wait for the rest of the long prompt
            assert recs["short"].items and recs["short"].first_step() == recs["long"].step
            assert sched.prefill_passes == passes + 2
            assert not recs["long"].items
    assert steps >= LONG // BUDGET  # it really was prefilled in many chunks
    while sched.busy:
        step(sched, *recs.values())

    for k, ref in refs.items():
        assert recs[k].tokens() == ref.token_ids, k
        assert recs[k].finish() == ref.finish_reason


def test_a_newcomer_waits_at_most_one_chunk_with_a_full_budget_of_decoding_rows(engine: Engine) -> None:
    """Decode rows take the budget first, yet prefill still moves (half the budget at least) and a short prompt
    still joins in the next iteration."""
    sched = Scheduler(engine.model, engine.tokenizer, Limits(step_tokens=16, max_slots=8))
    runners = [Recorder(sched) for _ in range(6)]
    for i, rec in enumerate(runners):
        submit(sched, prompt(3, 10 + i), rec, max_tokens=200)
    while sched.stats().batch < 6:
        step(sched, *runners)
    long, short = Recorder(sched), Recorder(sched)
    everyone = [*runners, long, short]
    submit(sched, prompt(40, 20), long, max_tokens=2)
    step(sched, *everyone)
    passes = sched.prefill_passes
    step(sched, *everyone)
    assert sched.prefill_passes == passes + 1  # 6 rows of a 16-position budget: the long prompt still moved
    submit(sched, prompt(4, 21), short, max_tokens=1)
    step(sched, *everyone)
    assert short.items and not long.items
    assert sched.stats().batch == 6 and sched.decode_steps == runners[0].step  # every iteration decoded


def test_a_long_prefill_keeps_moving_under_a_stream_of_newcomers(engine: Engine) -> None:
    """Newcomers overtake a long prompt but leave it part of every step's budget: it is never starved."""
    sched = Scheduler(engine.model, engine.tokenizer, Limits(step_tokens=BUDGET))
    long = Recorder(sched)
    submit(sched, prompt(LONG, 30), long, max_tokens=1)
    step(sched, long)
    steps = 0
    while not long.items:
        newcomers = [Recorder(sched) for _ in range(2)]  # 2 x 8 positions: most of each step's budget
        for i, rec in enumerate(newcomers):
            submit(sched, prompt(8, 100 + 2 * steps + i), rec, max_tokens=1)
        passes = sched.prefill_passes
        step(sched, long, *newcomers)
        steps += 1
        assert all(r.finish() is not None for r in newcomers)  # both answered in this very iteration
        assert sched.prefill_passes == passes + 2  # their forward and a chunk of the long prompt
        assert steps < LONG  # it finishes
    assert long.finish() == "length"


class CancelAt(threading.Event):
    """A cancel Event that turns set once `armed` is."""

    armed = False

    def is_set(self) -> bool:
        return self.armed


def test_cancel_mid_prefill_stops_within_one_chunk_and_frees_its_memory(engine: Engine) -> None:
    # room for one long prompt at a time: the second waits for the first's memory
    sched = Scheduler(engine.model, engine.tokenizer, Limits(step_tokens=BUDGET, kv_tokens=512))
    first, second = Recorder(sched), Recorder(sched)
    cancel = CancelAt()
    submit(sched, prompt(LONG, 4), first, max_tokens=4, cancel=cancel)
    submit(sched, prompt(LONG, 5), second, max_tokens=4)
    for _ in range(4):
        step(sched, first, second)
    assert sched.stats().waiting == 2 and not first.items  # one prefilling, one waiting for its memory
    passes = sched.prefill_passes
    cancel.armed = True
    step(sched, first, second)
    assert first.finish() == "cancelled" and first.tokens() == []
    # it ran no further chunk, and in the same iteration the second prompt started in the memory it freed
    assert sched.prefill_passes == passes + 1 and sched.stats().waiting == 1
    while sched.busy:
        step(sched, first, second)
    assert second.finish() == "length" and len(second.tokens()) == 4


def test_an_abandoned_stream_cancels_its_prefill(engine: Engine) -> None:
    """The caller's end closing (a client gone) is the same as a cancel: the next iteration drops the prompt."""
    sched = Scheduler(engine.model, engine.tokenizer, Limits(step_tokens=BUDGET))
    stream = ChunkStream.of(
        lambda sink: sched.submit(prompt(LONG, 6), sampler=Sampler(), max_tokens=4, sink=sink)
    )
    sched.step()
    sched.step()
    passes = sched.prefill_passes
    stream.close()
    sched.step()
    assert sched.prefill_passes == passes and not sched.busy


def test_chunked_prefill_gives_the_unchunked_logits(engine: Engine) -> None:
    """The chunks the budget picks (shrinking with depth) leave the same cache and last logits as one pass."""
    model = engine.model
    ids = prompt(LONG, 7)
    scale = attention_scale(model.cfg.text)
    with torch.inference_mode():
        x = model.text.embed_tokens(ids)
        whole = model(x, 0, caches=(one := new_caches(model, LONG)))[0]
        start, widths, caches = 0, [], new_caches(model, LONG)
        while start < LONG:
            width = chunk_size(LONG - start, start, BUDGET, scale)
            logits = model(x[:, start : start + width], start, caches=caches)[0]
            widths.append(width)
            start += width
    assert len(set(widths)) > 1  # deeper chunks are narrower
    torch.testing.assert_close(logits, whole, rtol=1e-4, atol=1e-4)
    for a, b in zip(caches, one, strict=True):
        torch.testing.assert_close(a.k, b.k, rtol=1e-4, atol=1e-4)


SMOLLM2_135M = TextConfig(49152, 576, 1536, 30, 9, 3, 64, 1e-5, 100000.0, 8192)


def test_chunks_fit_the_budget_and_shrink_with_the_context_they_attend_to() -> None:
    scale = attention_scale(SMOLLM2_135M)
    assert 2000 < scale < 4000  # attention costs as much as the weights a few thousand positions in
    widths, start = [], 0
    while start < 8192:
        widths.append(chunk_size(8192 - start, start, 512, scale))
        assert prefill_cost(widths[-1], start, scale) <= 512
        start += widths[-1]
    assert sum(widths) == 8192
    assert widths[0] > 3 * widths[-1]  # an 8k prompt's last chunks attend to ~8k keys
    # evened out: no stub of a last chunk
    assert chunk_size(600, 0, 10_000, scale) == 600
    assert chunk_size(20, 0, 8, 1e9) == 7 and chunk_size(6, 14, 8, 1e9) == 6
    assert chunk_size(5, 0, 0, scale) == 1  # always progress
