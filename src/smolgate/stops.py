"""Stop sequences enforced by the gateway, for upstreams whose protocol cannot take them.

Streaming: text that could still become a stop sequence is held back (never more than the longest stop
minus one character); when one matches, the text before it is sent, the block closes, and the message
ends with stop reason `stop_sequence` — the upstream request is then closed by the caller.
"""

from __future__ import annotations

from typing import AsyncIterator

import msgspec

from .canonical import BlockStop, Event, MessageDelta, MessageStop, Response, StopReason, Text, TextDelta


def cut(text: str, stops: list[str]) -> tuple[str, str | None]:
    """The text before the earliest stop sequence, and which one matched."""
    best: tuple[int, str] | None = None
    for s in stops:
        i = text.find(s) if s else -1
        if i >= 0 and (best is None or i < best[0]):
            best = (i, s)
    return (text, None) if best is None else (text[: best[0]], best[1])


def _held(text: str, stops: list[str]) -> int:
    """How many trailing characters could be the start of a stop sequence."""
    n = 0
    for s in stops:
        for k in range(min(len(s) - 1, len(text)), 0, -1):
            if text.endswith(s[:k]):
                n = max(n, k)
                break
    return n


def apply_to_response(resp: Response, stops: list[str]) -> Response:
    content, out = [], False
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
    pending: dict[int, str] = {}  # per text block: held-back text
    async for ev in events:
        if isinstance(ev, TextDelta):
            buf = pending.get(ev.index, "") + ev.text
            text, hit = cut(buf, stops)
            if hit is not None:
                if text:
                    yield TextDelta(index=ev.index, text=text)
                yield BlockStop(index=ev.index)
                yield MessageDelta(stop_reason=StopReason.STOP_SEQUENCE, stop_sequence=hit)
                yield MessageStop()
                return
            keep = _held(buf, stops)
            pending[ev.index] = buf[len(buf) - keep :] if keep else ""
            if len(buf) > keep:
                yield TextDelta(index=ev.index, text=buf[: len(buf) - keep])
        elif isinstance(ev, BlockStop) and pending.get(ev.index):
            yield TextDelta(index=ev.index, text=pending.pop(ev.index))
            yield ev
        else:
            yield ev
