"""How a request's chunks reach its caller: the decode thread hands each one to the request's sink.

- `ChunkStream`: a blocking iterator over a queue (Engine.stream, tests, the bench, the CLI).
- `AsyncChunks`: an event loop's async iterator; the sink posts straight to the loop (Engine.submit), with no
  thread in between.
Either end abandons its request through the `Ticket` when the caller leaves early; the decode thread frees the
slot at its next step.
"""

from __future__ import annotations

import asyncio
import queue
from collections.abc import AsyncIterator, Callable, Iterator

from .api import Chunk, EngineError, EngineInternal, EngineUsage
from .generate import GenerationChunk

# Where a request's chunks go, called on the decode thread; the last item is a chunk with finish_reason set or
# an exception. It must not block.
Sink = Callable[[GenerationChunk | BaseException], None]


class Ticket:
    """The caller's handle on a submitted request; the decode thread checks `abandoned` every step."""

    __slots__ = ("abandoned",)

    def __init__(self) -> None:
        self.abandoned = False

    def abandon(self) -> None:
        """Stop the request: its slot is freed at the next step (and its sink gets a "cancelled" end)."""
        self.abandoned = True


class ChunkStream(Iterator[GenerationChunk]):
    """A blocking end for a request; closing (or dropping) it abandons the request."""

    def __init__(self, out: queue.SimpleQueue[GenerationChunk | BaseException], ticket: Ticket) -> None:
        self._out, self._ticket, self._done = out, ticket, False

    @classmethod
    def of(cls, submit: Callable[[Sink], Ticket]) -> ChunkStream:
        """The stream of `submit(sink)` (a Scheduler.submit with every argument but the sink bound)."""
        out: queue.SimpleQueue[GenerationChunk | BaseException] = queue.SimpleQueue()
        return cls(out, submit(out.put))

    def __next__(self) -> GenerationChunk:
        if self._done:
            raise StopIteration
        item = self._out.get()
        if isinstance(item, BaseException):
            self._done = True
            raise item
        if item.finish_reason is not None:
            self._done = True
        return item

    def close(self) -> None:
        if not self._done:
            self._ticket.abandon()
        self._done = True

    def __del__(self) -> None:
        self.close()


class AsyncChunks(AsyncIterator[Chunk]):
    """An event loop's end of one request. The decode thread posts items through `sink`; leaving early (`aclose`,
    dropping it, or cancelling the task awaiting a chunk) abandons the request."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._queue: asyncio.Queue[GenerationChunk | BaseException] = asyncio.Queue()  # <= max_tokens items
        self.ticket: Ticket | None = None
        self._done = False

    def sink(self, item: GenerationChunk | BaseException) -> None:  # on the decode thread
        self._loop.call_soon_threadsafe(self._queue.put_nowait, item)

    async def __anext__(self) -> Chunk:
        if self._done:
            raise StopAsyncIteration
        try:
            item = await self._queue.get()
        except BaseException:
            self._abandon()
            raise
        if isinstance(item, BaseException):
            self._done = True
            if isinstance(item, EngineError):
                raise item
            raise EngineInternal(f"generation failed: {item!r}") from item
        if item.finish_reason is not None:
            self._done = True
        usage = item.usage
        return Chunk(
            item.text,
            item.finish_reason,
            item.stop_sequence,
            None if usage is None else EngineUsage(usage.prompt_tokens, usage.completion_tokens),
        )

    async def aclose(self) -> None:
        self._abandon()

    def _abandon(self) -> None:
        if not self._done:
            self._done = True
            if self.ticket is not None:
                self.ticket.abandon()

    def __del__(self) -> None:
        self._abandon()
