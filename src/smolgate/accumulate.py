"""Fold a canonical event stream into a `Response` (for providers that only stream)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import msgspec

from .canonical import (
    Block,
    BlockStart,
    Event,
    MessageDelta,
    MessageStart,
    Reasoning,
    ReasoningDelta,
    Response,
    SignatureDelta,
    StopReason,
    StreamError,
    Text,
    TextDelta,
    ToolArgsDelta,
    ToolCall,
    Usage,
)
from .errors import GatewayError


async def collect(events: AsyncIterator[Event]) -> Response:
    rid, model, created = "", "", 0
    blocks: dict[int, Block] = {}
    parts: dict[int, list[str]] = {}
    sigs: dict[int, list[str]] = {}
    stop, stop_seq, usage = StopReason.END_TURN, None, Usage()
    async for ev in events:
        if isinstance(ev, MessageStart):
            rid, model, created = ev.id, ev.model, ev.created
        elif isinstance(ev, BlockStart):
            blocks[ev.index], parts[ev.index] = ev.block, []
        elif isinstance(ev, (TextDelta, ReasoningDelta)):
            parts[ev.index].append(ev.text)
        elif isinstance(ev, ToolArgsDelta):
            parts[ev.index].append(ev.json)
        elif isinstance(ev, SignatureDelta):
            sigs.setdefault(ev.index, []).append(ev.signature)
        elif isinstance(ev, MessageDelta):
            stop = ev.stop_reason or stop
            stop_seq = ev.stop_sequence or stop_seq
            usage = ev.usage or usage
        elif isinstance(ev, StreamError):
            raise GatewayError(ev.kind, ev.message)
    content: list[Block] = []
    for i in sorted(blocks):
        b, joined = blocks[i], "".join(parts[i])
        if isinstance(b, Text):
            b = Text(text=joined)
        elif isinstance(b, ToolCall):
            b = msgspec.structs.replace(b, arguments=joined or "{}")
        elif isinstance(b, Reasoning):
            b = msgspec.structs.replace(b, text=joined, signature="".join(sigs.get(i, [])) or b.signature)
        content.append(b)
    return Response(
        id=rid,
        model=model,
        content=content,
        stop_reason=stop,
        stop_sequence=stop_seq,
        usage=usage,
        created=created,
    )
