"""Restoring placeholders in an answer: whole responses, and streams where a placeholder may arrive split
across any number of deltas.

The stream restorer holds back only a tail that could still become a placeholder (`⟦`, `⟦EMA`, `⟦EMAIL_1`);
every other character goes out in the delta that brought it. A held tail is released when it can no longer be
one, when its block ends, or before any event that is not a delta of its block. A placeholder the request did
not define (the model made one up) is left as written. In tool-call arguments (JSON text) a value is put back
JSON-escaped, so a restored PEM block or a quote keeps the arguments valid JSON.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import msgspec
import orjson

from ..canonical import (
    Block,
    Event,
    Reasoning,
    ReasoningDelta,
    Response,
    Text,
    TextDelta,
    ToolArgsDelta,
    ToolCall,
    ToolResult,
)
from .redact import CLOSE, OPEN

_PLACEHOLDER = re.compile(OPEN + r"([A-Z][A-Z0-9]*_\d{1,6})" + CLOSE)
_PREFIX = re.compile(OPEN + r"(?:[A-Z][A-Z0-9]*(?:_\d{0,6})?)?")  # what may still grow into a placeholder
_MAX_HELD = 40  # longer than any placeholder: past this a tail is text


class Restorer:
    """Placeholders → the request's values, for plain text and for JSON text."""

    __slots__ = ("_json", "values")

    def __init__(self, values: dict[str, str]) -> None:
        self.values = values
        self._json: dict[str, str] | None = None

    def text(self, s: str) -> str:
        if OPEN not in s:
            return s
        values = self.values
        return _PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group()), s)

    def json(self, s: str) -> str:
        if OPEN not in s:
            return s
        if self._json is None:
            self._json = {k: orjson.dumps(v).decode()[1:-1] for k, v in self.values.items()}
        values = self._json
        return _PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group()), s)

    # ------------------------------------------------------------------ a whole response
    def response(self, resp: Response) -> Response:
        content = [self._block(b) for b in resp.content]
        return msgspec.structs.replace(resp, content=content)

    def _block(self, b: Block) -> Block:
        if isinstance(b, Text):
            return msgspec.structs.replace(b, text=self.text(b.text))
        if isinstance(b, ToolCall):
            return msgspec.structs.replace(b, arguments=self.json(b.arguments))
        if isinstance(b, Reasoning) and b.text:
            return msgspec.structs.replace(b, text=self.text(b.text))
        if isinstance(b, ToolResult):
            return msgspec.structs.replace(
                b, content=[self._block(c) if isinstance(c, Text) else c for c in b.content]
            )
        return b

    # ------------------------------------------------------------------ a stream
    async def stream(self, events: AsyncIterator[Event]) -> AsyncIterator[Event]:
        held = ""
        last: TextDelta | ReasoningDelta | ToolArgsDelta | None = None  # the delta whose tail is held
        async for ev in events:
            if isinstance(ev, (TextDelta, ReasoningDelta, ToolArgsDelta)):
                if last is None and OPEN not in _body(ev):  # the common case: nothing to restore or hold
                    yield ev
                    continue
                if last is not None and (type(ev) is not type(last) or ev.index != last.index):
                    yield self._with(last, held, final=True)
                    held = ""
                out, held = self._split(held + _body(ev), isinstance(ev, ToolArgsDelta))
                last = ev if held else None
                if out:
                    yield self._with(ev, out)
                continue
            if last is not None:  # anything else ends the held tail's chance to grow
                yield self._with(last, held, final=True)
                held, last = "", None
            yield ev
        if last is not None:  # the stream ended inside a possible placeholder
            yield self._with(last, held, final=True)

    def _split(self, s: str, json: bool) -> tuple[str, str]:
        """(restored text to send now, tail held back)."""
        i = s.rfind(OPEN)
        if i < 0:
            return s, ""
        tail = s[i:]
        if len(tail) <= _MAX_HELD and _PREFIX.fullmatch(tail):
            s, tail = s[:i], tail
        else:
            tail = ""
        return (self.json(s) if json else self.text(s)), tail

    def _with(
        self, ev: TextDelta | ReasoningDelta | ToolArgsDelta, s: str, final: bool = False
    ) -> TextDelta | ReasoningDelta | ToolArgsDelta:
        if final:  # a held tail that never completed: restored as far as it goes (it holds no placeholder)
            s = self.json(s) if isinstance(ev, ToolArgsDelta) else self.text(s)
        if isinstance(ev, ToolArgsDelta):
            return ToolArgsDelta(index=ev.index, json=s)
        if isinstance(ev, ReasoningDelta):
            return ReasoningDelta(index=ev.index, text=s)
        return TextDelta(index=ev.index, text=s)


def _body(ev: TextDelta | ReasoningDelta | ToolArgsDelta) -> str:
    return ev.json if isinstance(ev, ToolArgsDelta) else ev.text
