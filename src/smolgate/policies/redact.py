"""Redaction: one request's detected values replaced by stable placeholders, and the map to restore them.

A placeholder reads `⟦EMAIL_1⟧`: the kind (so the model knows what stands there and can still write "send it
to ⟦EMAIL_1⟧"), a number per kind, in brackets that real text almost never holds. Mathematical white square
brackets are one or two tokens in common tokenizers, never markdown or JSON syntax, need no escaping in JSON
strings, and models reproduce such opaque identifiers verbatim; `[EMAIL_1]` would collide with markdown links
and `<EMAIL_1>` with HTML/XML that models rewrite.

Numbers are given in the order values first appear (system, then messages in order, each block in order), so
a conversation that grows turn by turn keeps its earlier placeholders: the upstream sees a stable prefix
(its prompt cache still hits) and signed reasoning replays unchanged. The same value is the same placeholder
everywhere in the request.
"""

from __future__ import annotations

from typing import Any

import msgspec
import orjson

from ..canonical import Block, Message, Reasoning, Request, Text, ToolCall, ToolResult
from .detectors import Detectors

OPEN, CLOSE = "\u27e6", "\u27e7"  # ⟦ ⟧


class Redaction:
    """The placeholders of one request: value → placeholder, placeholder → value, and counts per kind."""

    __slots__ = ("counts", "detectors", "placeholders", "values")

    def __init__(self, detectors: Detectors) -> None:
        self.detectors = detectors
        self.placeholders: dict[str, str] = {}  # value → placeholder
        self.values: dict[str, str] = {}  # placeholder name (EMAIL_1) → value
        self.counts: dict[str, int] = {}  # kind → distinct values replaced

    def text(self, s: str) -> str:
        found = self.detectors.find(s)
        if not found:
            return s
        out: list[str] = []
        pos = 0
        for f in found:
            out.append(s[pos : f.start])
            out.append(self._placeholder(f.kind, s[f.start : f.end]))
            pos = f.end
        out.append(s[pos:])
        return "".join(out)

    def json_text(self, s: str) -> str:
        """Tool-call arguments (JSON text): every string in it redacted, re-encoded; not JSON: as text."""
        try:
            value = orjson.loads(s)
        except orjson.JSONDecodeError:
            return self.text(s)
        walked = self._walk(value)
        return s if walked is value else orjson.dumps(walked).decode()

    def _walk(self, v: Any) -> Any:
        if isinstance(v, str):
            return self.text(v)
        if isinstance(v, list):
            items = [self._walk(x) for x in v]
            return v if all(a is b for a, b in zip(items, v, strict=True)) else items
        if isinstance(v, dict):
            pairs = {self.text(k): self._walk(x) for k, x in v.items()}
            same = all(k in v and v[k] is x for k, x in pairs.items())
            return v if same else pairs
        return v

    def _placeholder(self, kind: str, value: str) -> str:
        found = self.placeholders.get(value)
        if found is not None:
            return found
        n = self.counts.get(kind, 0) + 1
        self.counts[kind] = n
        name = f"{kind.upper()}_{n}"
        self.values[name] = value
        placeholder = self.placeholders[value] = f"{OPEN}{name}{CLOSE}"
        return placeholder

    # ------------------------------------------------------------------ the request
    def request(self, req: Request) -> Request:
        """`req` with every text that goes upstream redacted: system, messages (text, tool arguments, tool
        results, reasoning) and Ollama's `suffix`. Images pass as they are (`privacy.images` is the hook)."""
        system = [self._text_block(t) for t in req.system]
        messages = [self._message(m) for m in req.messages]
        changes: dict[str, Any] = {"system": system, "messages": messages}
        suffix = req.extras.ollama.suffix
        if suffix:
            extras = msgspec.structs.replace(
                req.extras, ollama=msgspec.structs.replace(req.extras.ollama, suffix=self.text(suffix))
            )
            changes["extras"] = extras
        return msgspec.structs.replace(req, **changes)

    def _text_block(self, t: Text) -> Text:
        s = self.text(t.text)
        return t if s is t.text else msgspec.structs.replace(t, text=s)

    def _message(self, m: Message) -> Message:
        content = [self._block(b) for b in m.content]
        same = all(a is b for a, b in zip(content, m.content, strict=True))
        return m if same else msgspec.structs.replace(m, content=content)

    def _block(self, b: Block) -> Block:
        if isinstance(b, Text):
            return self._text_block(b)
        if isinstance(b, ToolCall):
            args = self.json_text(b.arguments)
            return b if args is b.arguments else msgspec.structs.replace(b, arguments=args)
        if isinstance(b, ToolResult):
            content = [self._text_block(c) if isinstance(c, Text) else c for c in b.content]
            same = all(a is c for a, c in zip(content, b.content, strict=True))
            return b if same else msgspec.structs.replace(b, content=content)
        if isinstance(b, Reasoning) and b.text:
            s = self.text(b.text)
            return b if s is b.text else msgspec.structs.replace(b, text=s)
        return (
            b  # images, video (see privacy.images); opaque items replay only to the upstream that made them
        )
