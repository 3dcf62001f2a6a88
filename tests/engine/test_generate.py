"""The generation loop: stop strings and ids, max_tokens, usage, cancellation, seeding, input checks."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest
import torch
from checkpoints import make_checkpoint
from numerics import assert_answer_is_decisive
from PIL import Image

from smolgate.engine.api import ContextTooLong, InputInvalid
from smolgate.engine.engine import ChatMessage, Engine, GenerationParams, ImagePart, TextPart
from smolgate.engine.kvcache import KVCache
from smolgate.stops import StopMatcher

MESSAGES = [ChatMessage("user", [TextPart("Tell me a story.")])]


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Engine:
    torch.set_num_threads(2)
    path, _ = make_checkpoint("smollm2-text", tmp_path_factory.mktemp("text"))
    return Engine.load(str(path))


@pytest.fixture(scope="module")
def free_run(engine: Engine):  # type: ignore[no-untyped-def]
    """48 greedy tokens with no stop condition: the text the other tests cut. Decisive (numerics.py): two
    concurrent requests share decode steps, whose batch kernels round differently from one row's."""
    result = engine.generate(MESSAGES, GenerationParams(max_tokens=48))
    assert result.finish_reason == "length" and len(result.text) > 30
    assert_answer_is_decisive(engine, MESSAGES, result.token_ids)
    return result


def collect(engine: Engine, params: GenerationParams, cancel: threading.Event | None = None) -> list:  # type: ignore[type-arg]
    return list(engine.stream(MESSAGES, params, cancel))


def test_stop_matcher_holds_back_partial_matches() -> None:
    m = StopMatcher(["STOP", "\n\n"])
    assert m.feed("Hello ST") == ("Hello ", None)  # "ST" might start STOP
    assert m.feed("AR") == ("STAR", None)  # it did not: released
    assert m.feed(" end\n") == (" end", None)
    assert m.feed("\nrest") == ("", "\n\n")
    m = StopMatcher(["abc"])
    assert m.feed("xa") == ("x", None) and m.feed("b") == ("", None) and m.feed("c tail") == ("", "abc")
    assert StopMatcher([]).feed("anything") == ("anything", None)
    m = StopMatcher(["<end>"])
    assert m.feed("a<en") == ("a", None) and m.flush() == "<en"


def test_stop_string_ends_generation_and_never_leaks(engine: Engine, free_run) -> None:  # type: ignore[no-untyped-def]
    text = free_run.text
    stop = text[12:17]
    cut = text.index(stop)
    chunks = collect(engine, GenerationParams(max_tokens=48, stop=[stop, "never-generated"]))
    streamed = "".join(c.text for c in chunks)
    assert streamed == text[:cut]
    assert all(c.finish_reason is None for c in chunks[:-1])
    last = chunks[-1]
    assert last.finish_reason == "stop_sequence" and last.stop_sequence == stop
    assert last.usage is not None and last.usage.completion_tokens < free_run.completion_tokens


def test_stop_token_id_finishes_with_stop(engine: Engine, free_run) -> None:  # type: ignore[no-untyped-def]
    stop_id = free_run.token_ids[5]
    first = free_run.token_ids.index(stop_id)
    result = engine.generate(MESSAGES, GenerationParams(max_tokens=48, stop_token_ids=[stop_id]))
    assert result.finish_reason == "stop" and result.stop_sequence is None
    assert result.token_ids == free_run.token_ids[: first + 1]
    assert result.text == engine.tokenizer.decode(free_run.token_ids[:first])


def test_max_tokens_and_usage(engine: Engine, free_run) -> None:  # type: ignore[no-untyped-def]
    result = engine.generate(MESSAGES, GenerationParams(max_tokens=7))
    assert result.finish_reason == "length" and result.completion_tokens == 7
    assert result.token_ids == free_run.token_ids[:7]
    assert result.prompt_tokens == engine.count_prompt_tokens(MESSAGES) == free_run.prompt_tokens


def test_cancellation_stops_generation(engine: Engine) -> None:
    cancel = threading.Event()
    chunks = []
    for chunk in engine.stream(MESSAGES, GenerationParams(max_tokens=200), cancel):
        chunks.append(chunk)
        cancel.set()  # after the first piece of text
    assert chunks[-1].finish_reason == "cancelled"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens < 10

    already = threading.Event()
    already.set()
    result = engine.generate(MESSAGES, GenerationParams(max_tokens=50), already)
    assert (result.finish_reason, result.completion_tokens, result.text) == ("cancelled", 0, "")


def test_seeded_sampling_is_reproducible(engine: Engine) -> None:
    params = GenerationParams(max_tokens=16, temperature=1.0, top_p=0.95, top_k=50, seed=7)
    a, b = engine.generate(MESSAGES, params), engine.generate(MESSAGES, params)
    assert a.token_ids == b.token_ids
    params.seed = 8
    assert engine.generate(MESSAGES, params).token_ids != a.token_ids


def test_repetition_penalty_changes_greedy_output(engine: Engine, free_run) -> None:  # type: ignore[no-untyped-def]
    result = engine.generate(MESSAGES, GenerationParams(max_tokens=48, repetition_penalty=3.0))
    assert result.token_ids != free_run.token_ids


def test_images_to_text_model_are_rejected(engine: Engine) -> None:
    messages = [ChatMessage("user", [ImagePart(Image.new("RGB", (8, 8))), TextPart("what is this?")])]
    with pytest.raises(InputInvalid, match="images") as info:
        engine.count_prompt_tokens(messages)
    assert isinstance(info.value, ValueError)
    with pytest.raises(InputInvalid):
        engine.stream(messages, GenerationParams())  # raised on the call, before any chunk is requested


@pytest.mark.parametrize(
    "bad",
    [
        {"temperature": -1.0},
        {"top_p": 0.0},
        {"top_p": 1.5},
        {"top_k": -2},
        {"max_tokens": -1},
        {"repetition_penalty": 0},
    ],
)
def test_invalid_parameters_are_rejected(engine: Engine, bad: dict) -> None:  # type: ignore[type-arg]
    with pytest.raises(ValueError, match=next(iter(bad))):
        engine.stream(MESSAGES, GenerationParams(**bad))


def test_context_length_bounds_generation(engine: Engine) -> None:
    n = engine.count_prompt_tokens(MESSAGES)
    saved = engine.context_length
    try:
        engine.context_length = n + 3
        result = engine.generate(MESSAGES, GenerationParams(max_tokens=100))
        assert result.finish_reason == "length" and result.completion_tokens == 3
        engine.context_length = n
        with pytest.raises(ContextTooLong):
            engine.generate(MESSAGES, GenerationParams())
    finally:
        engine.context_length = saved


def test_concurrent_requests_are_serialised(engine: Engine, free_run) -> None:  # type: ignore[no-untyped-def]
    results: list = []  # type: ignore[type-arg]
    threads = [
        threading.Thread(
            target=lambda: results.append(engine.generate(MESSAGES, GenerationParams(max_tokens=48)))
        )
        for _ in range(2)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [r.token_ids for r in results] == [free_run.token_ids] * 2


def test_kv_cache_update_writes_in_place() -> None:
    cache = KVCache(batch=1, kv_heads=2, max_len=8, head_dim=4, dtype=torch.float32)
    k, v = torch.ones(1, 2, 3, 4), torch.full((1, 2, 3, 4), 2.0)
    keys, values = cache.update(0, k, v)
    assert keys.shape == (1, 2, 3, 4) and keys.data_ptr() == cache.k.data_ptr()  # a view, no copy
    keys, values = cache.update(3, 3 * k[:, :, :1], v[:, :, :1])
    assert keys.shape == (1, 2, 4, 4) and keys[0, 0, 3, 0] == 3 and values[0, 1, 2, 0] == 2
    with pytest.raises(IndexError):
        cache.update(7, k, v)


def _resident_bytes() -> int:
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def test_a_big_kv_cache_starts_zero_and_grows_keeping_its_rows() -> None:
    # big caches are mapped fresh from the kernel instead of written with zeros: they must still read as zeros
    # (masked keys enter q·k, garbage could be NaN), hold what is written across a resize, and take memory only
    # where written (in pages of up to 2 MB: huge pages)
    from smolgate.engine.kvcache import FRESH_MEMORY_BYTES

    cache = KVCache(batch=2, kv_heads=3, max_len=4096, head_dim=64, dtype=torch.bfloat16)
    assert cache.k.numel() * 2 >= FRESH_MEMORY_BYTES and not cache.k.any() and not cache.v.any()
    k = torch.randn(2, 3, 100, 64, dtype=torch.bfloat16)
    cache.update(0, k, -k)
    before = _resident_bytes()
    grown = cache.resized(rows=4, max_len=65536, keep_rows=2)  # 2 x 100 MB
    grown.update_rows(
        torch.tensor([5000, 7000, 1, 8191]), k[[0, 1, 0, 1], :, :1], k[[0, 1, 0, 1], :, :1], 8192
    )
    assert _resident_bytes() - before < 100 << 20  # written with zeros, all 200 MB would be resident
    assert torch.equal(grown.k[:2, :, :100], k) and torch.equal(grown.v[:2, :, :100], -k)
    assert torch.equal(grown.k[3, :, 8191], k[1, :, 0]) and torch.equal(grown.k[0, :, 5000], k[0, :, 0])
    assert (
        not grown.k[:2, :, 100:5000].any()
        and not grown.k[2:, :, 2:8191].any()
        and not grown.v[2:, :, 8192:].any()
    )


class CancelAfter(threading.Event):
    """An event that reports itself set from the n-th check on (to cancel at a precise point)."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.checks, self.n = 0, n

    def is_set(self) -> bool:
        self.checks += 1
        return self.checks >= self.n


def test_cancel_lands_between_prefill_chunks(engine: Engine) -> None:
    from oracle import new_caches, prefill

    ids = torch.tensor([list(range(100, 140))])
    caches = new_caches(engine.model, ids.shape[1])
    cancel = CancelAfter(3)
    assert prefill(engine.model, caches, ids, chunk=8, cancel=cancel) is None and cancel.checks == 3
    assert prefill(engine.model, caches, ids, chunk=8, cancel=CancelAfter(99)) is not None
