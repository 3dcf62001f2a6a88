"""Stop sequences: the one hold-back, used by the engine's decoding and by the gateway for upstreams whose
protocol cannot take them.

Streaming: text that could still become a stop sequence is held back (never more than the longest stop
minus one character); when one matches, the text before it is released and the rest dropped. The gateway then
closes the block and ends the message with stop reason `stop_sequence` (the caller closes the upstream request).
This module is pure Python (no torch) so both sides share it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable

import msgspec

from .canonical import (
    Block,
    BlockStop,
    Event,
    MessageDelta,
    MessageStop,
    Response,
    StopReason,
    Text,
    TextDelta,
)


def cut(text: str, stops: Iterable[str]) -> tuple[str, str | None]:
    """The text before the earliest stop sequence, and which one matched (the first listed, on a tie)."""
    best: tuple[int, str] | None = None
    for s in stops:
        i = text.find(s) if s else -1
        if i >= 0 and (best is None or i < best[0]):
            best = (i, s)
    return (text, None) if best is None else (text[: best[0]], best[1])


def held(text: str, stops: Iterable[str]) -> int:
    """How many trailing characters could be the start of a stop sequence."""
    n = 0
    for s in stops:
        for k in range(min(len(s) - 1, len(text)), n, -1):
            if text.endswith(s[:k]):
                n = k
                break
    return n


class StopMatcher:
    """Finds stop strings across chunk boundaries; withholds any tail that could be the start of one."""

    __slots__ = ("_buf", "stops")

    def __init__(self, stops: Iterable[str]) -> None:
        self.stops = tuple(s for s in stops if s)
        self._buf = ""

    def feed(self, text: str) -> tuple[str, str | None]:
        """-> (text safe to emit, matched stop string or None). After a match the rest is discarded."""
        if not self.stops:
            return text, None
        buf = self._buf + text
        before, hit = cut(buf, self.stops)
        if hit is not None:
            self._buf = ""
            return before, hit
        keep = held(buf, self.stops)
        self._buf = buf[len(buf) - keep :]
        return buf[: len(buf) - keep], None

    def flush(self) -> str:
        """The held-back text (the stream ended without a match)."""
        out, self._buf = self._buf, ""
        return out


def apply_to_response(resp: Response, stops: list[str]) -> Response:
    """The response cut at the earliest stop sequence in a text block (later blocks dropped)."""
    content: list[Block] = []
    out = False
    for b in resp.content:
        if out:
            continue
        if isinstance(b, Text):
            text, hit = cut(b.text, stops)
            if hit is not None:
                content.append(Text(text=text))
                resp = msgspec.structs.replace(resp, stop_reason=StopReason.STOP_SEQUENCE, stop_sequence=hit)
                out = True
                continue
        content.append(b)
    return msgspec.structs.replace(resp, content=content)


async def apply_to_stream(events: AsyncIterator[Event], stops: list[str]) -> AsyncIterator[Event]:
    """The event stream with text held back per block while it could start a stop sequence; on a match the
    block and the message end with stop reason `stop_sequence`."""
    matchers: dict[int, StopMatcher] = {}  # per text block
    async for ev in events:
        if isinstance(ev, TextDelta):
            matcher = matchers.setdefault(ev.index, StopMatcher(stops))
            text, hit = matcher.feed(ev.text)
            if text:
                yield TextDelta(index=ev.index, text=text)
            if hit is not None:
                yield BlockStop(index=ev.index)
                yield MessageDelta(stop_reason=StopReason.STOP_SEQUENCE, stop_sequence=hit)
                yield MessageStop()
                return
        elif isinstance(ev, BlockStop) and ev.index in matchers:
            if tail := matchers.pop(ev.index).flush():
                yield TextDelta(index=ev.index, text=tail)
            yield ev
        else:
            yield ev
