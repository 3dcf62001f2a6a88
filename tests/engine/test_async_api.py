"""`Engine.submit`, the engine's async boundary (engine/api.py): the same answers as the blocking path, chunks
posted straight to the event loop, leaving early frees the slot, and every failure arrives as a typed error."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator

import pytest
import torch
from checkpoints import make_checkpoint

from smolgate.engine.api import (
    Busy,
    ChatMessage,
    Chunk,
    ContextTooLong,
    EngineInternal,
    EngineRequest,
    ImagePart,
    InputInvalid,
    JsonSpec,
    LocalEngine,
    TextPart,
)
from smolgate.engine.engine import Engine, GenerationParams, Limits

MESSAGES = [ChatMessage("user", [TextPart("Tell me a story.")])]


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Engine:
    torch.set_num_threads(2)
    path, _ = make_checkpoint("smollm2-text", tmp_path_factory.mktemp("async"))
    return Engine.load(str(path))


async def drain(chunks: AsyncIterator[Chunk]) -> list[Chunk]:
    return [c async for c in chunks]


async def wait_idle(engine: Engine, steps_before: int) -> None:
    """The engine went idle long before the 500 tokens asked for (the request left at its next step). Waits on
    the loop that submitted: a closed loop would abandon the request by itself."""
    deadline = time.monotonic() + 30  # a liveness bound, not a speed claim
    while engine.scheduler.busy and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    assert not engine.scheduler.busy and engine.scheduler.decode_steps - steps_before < 100


def test_submit_answers_as_the_blocking_path_does(engine: Engine) -> None:
    handle: LocalEngine = engine  # the gateway's view of it type-checks
    expected = engine.generate(MESSAGES, GenerationParams(max_tokens=12))

    async def main() -> list[Chunk]:
        return await drain(await handle.submit(EngineRequest(MESSAGES, max_tokens=12)))

    chunks = asyncio.run(main())
    last = chunks[-1]
    assert "".join(c.text for c in chunks) == expected.text
    assert all(c.finish_reason is None for c in chunks[:-1]) and last.finish_reason == expected.finish_reason
    assert last.usage is not None
    assert (last.usage.prompt_tokens, last.usage.completion_tokens) == (
        expected.prompt_tokens,
        expected.completion_tokens,
    )
    assert asyncio.run(handle.count_tokens(EngineRequest(MESSAGES))) == expected.prompt_tokens


def test_closing_the_iterator_or_cancelling_the_task_frees_the_slot(engine: Engine) -> None:
    async def close_early() -> None:
        before = engine.scheduler.decode_steps
        chunks = await engine.submit(EngineRequest(MESSAGES, max_tokens=500))
        first = await anext(chunks)
        await chunks.aclose()  # type: ignore[attr-defined]
        assert first.finish_reason is None
        await wait_idle(engine, before)

    asyncio.run(close_early())

    async def cancel_task() -> None:
        before = engine.scheduler.decode_steps
        started = asyncio.Event()

        async def consume() -> None:
            async for _ in await engine.submit(EngineRequest(MESSAGES, max_tokens=500)):
                started.set()

        task = asyncio.create_task(consume())
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await wait_idle(engine, before)

    asyncio.run(cancel_task())


def test_prompt_errors_raise_from_submit_typed_with_their_numbers(engine: Engine) -> None:
    prompt = engine.count_prompt_tokens(MESSAGES)
    too_many = engine.context_length - prompt + 1
    with pytest.raises(ContextTooLong) as info:
        asyncio.run(engine.submit(EngineRequest(MESSAGES, max_tokens=too_many, strict_length=True)))
    assert (info.value.prompt_tokens, info.value.limit, info.value.max_tokens) == (
        prompt,
        engine.context_length,
        too_many,
    )
    with pytest.raises(InputInvalid) as bad:
        asyncio.run(engine.submit(EngineRequest(MESSAGES, top_p=0.0)))
    assert bad.value.param == "top_p"
    image = [ChatMessage("user", [ImagePart(b"\x89PNG", param="messages[0].content[0]")])]
    with pytest.raises(InputInvalid, match="text-only") as text_only:
        asyncio.run(engine.submit(EngineRequest(image)))
    assert text_only.value.param == "messages[0].content[0]"


def test_a_full_queue_is_busy_with_a_retry_after(engine: Engine) -> None:
    saved = engine.scheduler.limits
    engine.scheduler.limits = Limits(max_queue=0)
    try:
        with pytest.raises(Busy) as info:
            asyncio.run(engine.submit(EngineRequest(MESSAGES)))
    finally:
        engine.scheduler.limits = saved
    assert info.value.retry_after == 1


def test_a_failure_inside_the_engine_is_internal_not_the_clients_fault(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*_: object, **__: object) -> torch.Tensor:
        raise ValueError("shape mismatch deep inside")

    # the text decoder: a short prompt is prefilled by it directly (with others), a long one through model.forward
    monkeypatch.setattr(engine.model.text, "forward", broken)

    async def main() -> list[Chunk]:
        return await drain(await engine.submit(EngineRequest(MESSAGES, max_tokens=4)))

    with pytest.raises(EngineInternal) as info:
        asyncio.run(main())
    assert not isinstance(info.value, InputInvalid) and isinstance(info.value.__cause__, ValueError)


def test_the_engine_builds_the_json_constraint_from_a_schema_spec(engine: Engine) -> None:
    schema = {
        "type": "object",
        "properties": {"n": {"type": "integer"}},
        "required": ["n"],
        "additionalProperties": False,
    }

    async def main(spec: JsonSpec) -> str:
        chunks = await drain(await engine.submit(EngineRequest(MESSAGES, max_tokens=40, constraint=spec)))
        return "".join(c.text for c in chunks)

    value = json.loads(asyncio.run(main(JsonSpec(schema))))
    assert set(value) == {"n"} and isinstance(value["n"], int)
    with pytest.raises(InputInvalid, match="unsupported JSON schema") as info:
        asyncio.run(main(JsonSpec({"$ref": "http://elsewhere/schema.json"})))
    assert info.value.param == "response_format"
