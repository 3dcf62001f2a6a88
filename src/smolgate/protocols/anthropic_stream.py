"""Anthropic Messages streaming (SSE) both ways, plus the small tables both Anthropic modules share.

`AnthropicStreamEncoder`: canonical events → `event: <type>` + `data: {...}` frames (every frame carries
its `event:` line — the SDK silently drops data-only events). `AnthropicStreamDecoder`: upstream SSE bytes →
canonical events; `ping` ignored, `message_delta` held until `message_stop` (so the one canonical
`MessageDelta` carries final cumulative usage), `event: error` and truncation become `StreamError`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import msgspec
import orjson

from ..canonical import (
    BlockStart,
    BlockStop,
    Event,
    MessageDelta,
    MessageStart,
    MessageStop,
    Reasoning,
    ReasoningDelta,
    Request,
    SignatureDelta,
    StopReason,
    StreamError,
    Text,
    TextDelta,
    ToolArgsDelta,
    ToolCall,
    Usage,
)
from ..errors import ErrorKind
from . import anthropic_wire as w
from .base import StreamDecoder, StreamEncoder
from .common import new_id
from .sse import SSEParser, sse_event
from .wire import Invalid, Unknown

# ---------------------------------------------------------------- shared tables

STOP_TO_WIRE = {
    StopReason.END_TURN: "end_turn",
    StopReason.MAX_TOKENS: "max_tokens",
    StopReason.STOP_SEQUENCE: "stop_sequence",
    StopReason.TOOL_USE: "tool_use",
    StopReason.CONTENT_FILTER: "refusal",
}
STOP_FROM_WIRE = {
    "end_turn": StopReason.END_TURN,
    "stop_sequence": StopReason.STOP_SEQUENCE,
    "max_tokens": StopReason.MAX_TOKENS,
    "pause_turn": StopReason.MAX_TOKENS,
    "model_context_window_exceeded": StopReason.MAX_TOKENS,
    "compaction": StopReason.MAX_TOKENS,
    "tool_use": StopReason.TOOL_USE,
    "refusal": StopReason.CONTENT_FILTER,
}

# canonical error kind ↔ Anthropic error type (protocols.md §3.5)
KIND_TO_TYPE = {
    ErrorKind.INVALID_REQUEST: "invalid_request_error",
    ErrorKind.AUTH: "authentication_error",
    ErrorKind.PERMISSION: "permission_error",
    ErrorKind.NOT_FOUND: "not_found_error",
    ErrorKind.TOO_LARGE: "request_too_large",
    ErrorKind.RATE_LIMITED: "rate_limit_error",
    ErrorKind.QUOTA: "billing_error",
    ErrorKind.OVERLOADED: "overloaded_error",
    ErrorKind.UPSTREAM: "api_error",
    ErrorKind.TIMEOUT: "timeout_error",
    ErrorKind.INTERNAL: "api_error",
}
TYPE_TO_KIND = {
    "invalid_request_error": ErrorKind.INVALID_REQUEST,
    "authentication_error": ErrorKind.AUTH,
    "permission_error": ErrorKind.PERMISSION,
    "billing_error": ErrorKind.PERMISSION,
    "not_found_error": ErrorKind.NOT_FOUND,
    "request_too_large": ErrorKind.TOO_LARGE,
    "rate_limit_error": ErrorKind.RATE_LIMITED,
    "overloaded_error": ErrorKind.OVERLOADED,
    "api_error": ErrorKind.UPSTREAM,
    "timeout_error": ErrorKind.TIMEOUT,
}

_TOOL_ID_OK = re.compile(r"[A-Za-z0-9_-]+")
_TOOL_ID_BAD = re.compile(r"[^A-Za-z0-9_-]")


def tool_id(raw: str) -> str:
    """A tool id valid for Anthropic (`^[a-zA-Z0-9_-]+$`). Deterministic, so a call and its result agree."""
    if raw and _TOOL_ID_OK.fullmatch(raw):
        return raw
    if not raw:
        return new_id("toolu_")
    return _TOOL_ID_BAD.sub("_", raw)


def message_id(raw: str) -> str:
    if raw.startswith("msg_"):
        return raw
    return "msg_" + raw if raw else new_id("msg_")


def usage_json(u: Usage | None) -> dict[str, Any]:
    """Canonical usage → Anthropic usage; `input_tokens` excludes cache reads and writes."""
    if u is None:
        u = Usage()
    out: dict[str, Any] = {
        "input_tokens": max(0, u.input_tokens - u.cached_tokens - u.cache_creation_tokens),
        "output_tokens": u.output_tokens,
        "cache_creation_input_tokens": u.cache_creation_tokens,
        "cache_read_input_tokens": u.cached_tokens,
    }
    if u.cache_creation_1h_tokens:
        hour = u.cache_creation_1h_tokens
        out["cache_creation"] = {
            "ephemeral_5m_input_tokens": u.cache_creation_tokens - hour,
            "ephemeral_1h_input_tokens": hour,
        }
    if u.reasoning_tokens:
        out["output_tokens_details"] = {"thinking_tokens": u.reasoning_tokens}
    return out


def _count(v: w.Count, absent: int) -> int:
    return absent if v is msgspec.UNSET else v or 0  # absent: keep the previous figure; null: zero


def usage_from_wire(u: w.WireUsage | None, prev: Usage | None = None) -> Usage:
    """Anthropic usage (or a cumulative `message_delta.usage`) → canonical; absent fields keep `prev`."""
    base = prev or Usage()
    if u is None:
        return base
    read = _count(u.cache_read_input_tokens, base.cached_tokens)
    made = _count(u.cache_creation_input_tokens, base.cache_creation_tokens)
    if isinstance(u.input_tokens, int):
        inp = u.input_tokens + read + made
    else:
        inp = base.input_tokens - base.cached_tokens - base.cache_creation_tokens + read + made
    det = u.output_tokens_details
    hour = (
        (u.cache_creation.ephemeral_1h_input_tokens or 0)
        if u.cache_creation
        else base.cache_creation_1h_tokens
    )
    return Usage(
        input_tokens=inp,
        output_tokens=_count(u.output_tokens, base.output_tokens),
        cached_tokens=read,
        cache_creation_tokens=made,
        cache_creation_1h_tokens=min(hour, made),
        reasoning_tokens=(det.thinking_tokens or 0) if det is not None else base.reasoning_tokens,
    )


def wire_usage(obj: object) -> w.WireUsage | None:
    """A usage object from a parsed (non-streaming) reply; None when it is not one."""
    try:
        return msgspec.convert(obj, w.WireUsage) if isinstance(obj, dict) else None
    except msgspec.ValidationError:
        return None


def error_frame(kind: ErrorKind, message: str) -> bytes:
    body = {"type": "error", "error": {"type": KIND_TO_TYPE.get(kind, "api_error"), "message": message}}
    return sse_event(orjson.dumps(body), "error")


# ---------------------------------------------------------------- client side: events → SSE bytes

_DELTA_HEAD = b'event: content_block_delta\ndata: {"type":"content_block_delta","index":'


def _delta(index: int, kind: bytes, key: bytes, value: str) -> bytes:
    return (
        _DELTA_HEAD
        + str(index).encode()
        + b',"delta":{"type":"'
        + kind
        + b'","'
        + key
        + b'":'
        + orjson.dumps(value)
        + b"}}\n\n"
    )


class AnthropicStreamEncoder(StreamEncoder):
    """One client stream. Canonical indices are renumbered so wire indices are always 0, 1, 2, …"""

    __slots__ = (
        "_delta_sent",
        "_index",
        "_kinds",
        "_model",
        "_next",
        "_open",
        "_pending",
        "_started",
        "_stopped",
    )

    def __init__(self, req: Request) -> None:
        self._model = req.model
        self._started = False
        self._index: dict[int, int] = {}  # canonical index → wire index
        self._kinds: dict[int, str] = {}  # wire index → text|tool_use|thinking|redacted_thinking
        self._open: set[int] = set()  # wire indices started but not stopped
        self._pending: set[int] = set()  # canonical text blocks not opened until their first non-empty text
        self._next = 0
        self._delta_sent = False
        self._stopped = False

    def _start(self, msg_id: str = "", model: str = "", usage: Usage | None = None) -> bytes:
        self._started = True
        msg: dict[str, Any] = {
            "id": message_id(msg_id),
            "type": "message",
            "role": "assistant",
            "model": model or self._model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": usage_json(usage),
        }
        return sse_event(orjson.dumps({"type": "message_start", "message": msg}), "message_start")

    def _close_open(self) -> bytes:
        out = b""
        for wi in sorted(self._open):
            out += sse_event(b'{"type":"content_block_stop","index":%d}' % wi, "content_block_stop")
        self._open.clear()
        return out

    def feed(self, ev: Event) -> bytes:
        if self._stopped:
            return b""
        pre = b"" if self._started or isinstance(ev, (MessageStart, StreamError)) else self._start()
        if isinstance(ev, TextDelta):
            wi = self._index.get(ev.index)
            if wi is None and ev.index in self._pending and ev.text:
                self._pending.discard(ev.index)
                return pre + self._block_start(BlockStart(index=ev.index, block=Text(text=ev.text)))
            if wi is None or wi not in self._open or self._kinds[wi] != "text" or not ev.text:
                return pre
            return pre + _delta(wi, b"text_delta", b"text", ev.text)
        if isinstance(ev, ToolArgsDelta):
            wi = self._index.get(ev.index)
            if wi is None or wi not in self._open or self._kinds[wi] != "tool_use" or not ev.json:
                return pre
            return pre + _delta(wi, b"input_json_delta", b"partial_json", ev.json)
        if isinstance(ev, ReasoningDelta):
            wi = self._index.get(ev.index)
            if wi is None or wi not in self._open or self._kinds[wi] != "thinking" or not ev.text:
                return pre
            return pre + _delta(wi, b"thinking_delta", b"thinking", ev.text)
        if isinstance(ev, SignatureDelta):
            wi = self._index.get(ev.index)
            if wi is None or wi not in self._open or self._kinds[wi] != "thinking" or not ev.signature:
                return pre
            return pre + _delta(wi, b"signature_delta", b"signature", ev.signature)
        if isinstance(ev, BlockStart):
            return pre + self._block_start(ev)
        if isinstance(ev, BlockStop):
            self._pending.discard(ev.index)  # an empty text block is never sent (Anthropic rejects them)
            wi = self._index.get(ev.index)
            if wi is None or wi not in self._open:
                return pre
            self._open.discard(wi)
            return pre + sse_event(b'{"type":"content_block_stop","index":%d}' % wi, "content_block_stop")
        if isinstance(ev, MessageStart):
            if self._started:
                return b""
            return self._start(ev.id, ev.model, ev.usage)
        if isinstance(ev, MessageDelta):
            self._delta_sent = True
            body = {
                "type": "message_delta",
                "delta": {
                    "stop_reason": STOP_TO_WIRE.get(ev.stop_reason or StopReason.END_TURN, "end_turn"),
                    "stop_sequence": ev.stop_sequence,
                },
                "usage": usage_json(ev.usage),
            }
            return pre + self._close_open() + sse_event(orjson.dumps(body), "message_delta")
        if isinstance(ev, MessageStop):
            out = pre + self._close_open()
            if not self._delta_sent:
                out += self.feed(MessageDelta(stop_reason=StopReason.END_TURN))
            self._stopped = True
            return out + sse_event(b'{"type":"message_stop"}', "message_stop")
        if isinstance(ev, StreamError):
            self._stopped = True
            return error_frame(ev.kind, ev.message)
        return pre

    def _block_start(self, ev: BlockStart) -> bytes:
        if isinstance(ev.block, Text) and not ev.block.text:
            self._pending.add(ev.index)
            return b""
        wi = self._next
        self._next += 1
        self._index[ev.index] = wi
        self._open.add(wi)
        b = ev.block
        tail = b""
        block: dict[str, Any]
        if isinstance(b, Text):
            kind, block = "text", {"type": "text", "text": ""}
            if b.text:
                tail = _delta(wi, b"text_delta", b"text", b.text)
        elif isinstance(b, ToolCall):
            kind, block = "tool_use", {"type": "tool_use", "id": tool_id(b.id), "name": b.name, "input": {}}
            if b.arguments:
                tail = _delta(wi, b"input_json_delta", b"partial_json", b.arguments)
        elif b.redacted is not None and not b.text and not b.signature:
            kind, block = "redacted_thinking", {"type": "redacted_thinking", "data": b.redacted}
        else:
            kind, block = "thinking", {"type": "thinking", "thinking": "", "signature": ""}
            if b.text:
                tail += _delta(wi, b"thinking_delta", b"thinking", b.text)
            if b.signature:
                tail += _delta(wi, b"signature_delta", b"signature", b.signature)
        self._kinds[wi] = kind
        frame = {"type": "content_block_start", "index": wi, "content_block": block}
        return sse_event(orjson.dumps(frame), "content_block_start") + tail


# ---------------------------------------------------------------- upstream side: SSE bytes → events


class _S:  # decoder states
    BEFORE, MESSAGE, DONE = 0, 1, 2


class AnthropicStreamDecoder(StreamDecoder):
    __slots__ = ("_map", "_next", "_open", "_skip", "_sse", "_state", "_stop", "_stop_seq", "_usage")

    def __init__(self) -> None:
        self._sse = SSEParser()
        self._state = _S.BEFORE
        self._map: dict[int, int] = {}  # wire index → canonical index
        self._skip: set[int] = set()  # wire indices of blocks we do not model (server tool blocks)
        self._open: set[int] = set()  # canonical indices open
        self._next = 0
        self._usage: Usage | None = None
        self._stop: str | None = None
        self._stop_seq: str | None = None

    def feed(self, chunk: bytes) -> list[Event]:
        out: list[Event] = []
        for msg in self._sse.feed(chunk):
            if self._state == _S.DONE:
                break
            self._message(msg.event, msg.data, out)
        return out

    def close(self) -> list[Event]:
        out: list[Event] = []
        for msg in self._sse.flush():
            if self._state == _S.DONE:
                break
            self._message(msg.event, msg.data, out)
        if self._state != _S.DONE:
            self._state = _S.DONE
            out.append(
                StreamError(kind=ErrorKind.UPSTREAM, message="upstream stream ended before message_stop")
            )
        return out

    def _fail(self, out: list[Event], kind: ErrorKind, message: str) -> None:
        self._state = _S.DONE
        out.append(StreamError(kind=kind, message=message))

    def _ensure_started(self, out: list[Event]) -> None:
        if self._state == _S.BEFORE:
            self._state = _S.MESSAGE
            out.append(MessageStart(id=new_id("msg_"), model=""))

    def _message(self, event: str | None, data: str, out: list[Event]) -> None:
        if not data or event == "ping":
            return
        ev = w.EVENTS.decode(data, event)
        handler = _HANDLERS.get(type(ev))
        if handler is not None:  # None: ping, or an event type we do not model
            handler(self, ev, out)

    def _invalid(self, ev: Invalid, out: list[Event]) -> None:
        self._fail(out, ErrorKind.UPSTREAM, "upstream sent an invalid stream event")

    def _delta(self, ev: w.ContentBlockDelta, out: list[Event]) -> None:
        ci = self._map.get(ev.index) if ev.index is not None else None
        d = ev.delta
        if ci is None or d is None:
            return
        if isinstance(d, w.TextDelta):
            if d.text:
                out.append(TextDelta(index=ci, text=d.text))
        elif isinstance(d, w.InputJsonDelta):
            if d.partial_json:
                out.append(ToolArgsDelta(index=ci, json=d.partial_json))
        elif isinstance(d, w.ThinkingDelta):
            if d.thinking:
                out.append(ReasoningDelta(index=ci, text=d.thinking))
        elif d.signature:
            out.append(SignatureDelta(index=ci, signature=d.signature))

    def _block_stop(self, ev: w.ContentBlockStop, out: list[Event]) -> None:
        ci = self._map.get(ev.index) if ev.index is not None else None
        if ci is not None and ci in self._open:
            self._open.discard(ci)
            out.append(BlockStop(index=ci))

    def _message_start(self, ev: w.MessageStart, out: list[Event]) -> None:
        if self._state != _S.BEFORE:
            return
        m = ev.message
        self._usage = usage_from_wire(m.usage)
        self._state = _S.MESSAGE
        out.append(MessageStart(id=m.id or new_id("msg_"), model=m.model or "", usage=self._usage))

    def _message_delta(self, ev: w.MessageDelta, out: list[Event]) -> None:
        self._ensure_started(out)
        if ev.delta is not None:
            if ev.delta.stop_reason is not None:
                self._stop = ev.delta.stop_reason
            if ev.delta.stop_sequence is not None:
                self._stop_seq = ev.delta.stop_sequence
        self._usage = usage_from_wire(ev.usage, self._usage)

    def _message_stop(self, ev: w.MessageStop, out: list[Event]) -> None:
        self._ensure_started(out)
        for ci in sorted(self._open):
            out.append(BlockStop(index=ci))
        self._open.clear()
        stop = STOP_FROM_WIRE.get(self._stop or "end_turn", StopReason.END_TURN)
        out.append(MessageDelta(stop_reason=stop, stop_sequence=self._stop_seq, usage=self._usage or Usage()))
        out.append(MessageStop())
        self._state = _S.DONE

    def _error(self, ev: w.Error, out: list[Event]) -> None:
        e = ev.error
        kind = TYPE_TO_KIND.get(e.type, ErrorKind.UPSTREAM) if e.type is not None else ErrorKind.UPSTREAM
        self._fail(out, kind, e.message if e.message is not None else "upstream stream error")

    def _block_start(self, ev: w.ContentBlockStart, out: list[Event]) -> None:
        self._ensure_started(out)
        wi = ev.index
        cb = w.BLOCKS.decode(ev.content_block)
        if wi is None or wi in self._map or wi in self._skip or isinstance(cb, Invalid):
            return
        for open_ci in sorted(self._open):  # a new block closes any still-open one (never interleave)
            out.append(BlockStop(index=open_ci))
        self._open.clear()
        if isinstance(cb, Unknown):  # server_tool_use, web_search_tool_result, …: not modelled canonically
            self._skip.add(wi)
            return
        ci = self._next
        block, tail = _block(cb, ci)
        self._next += 1
        self._map[wi] = ci
        self._open.add(ci)
        out.append(BlockStart(index=ci, block=block))
        if tail is not None:
            out.append(tail)


def _block(cb: w.ContentBlock, ci: int) -> tuple[Text | ToolCall | Reasoning, Event | None]:
    """A started content block → its canonical block and the delta its initial content makes."""
    if isinstance(cb, w.TextBlock):
        return Text(text=""), TextDelta(index=ci, text=cb.text) if cb.text else None
    if isinstance(cb, w.ToolUseBlock):
        call = ToolCall(id=cb.id if cb.id is not None else new_id("toolu_"), name=cb.name or "", arguments="")
        return call, ToolArgsDelta(index=ci, json=orjson.dumps(cb.input).decode()) if cb.input else None
    if isinstance(cb, w.ThinkingBlock):
        return Reasoning(), ReasoningDelta(index=ci, text=cb.thinking) if cb.thinking else None
    return Reasoning(redacted=cb.data or ""), None


_Handler = Callable[[AnthropicStreamDecoder, Any, list[Event]], None]
_HANDLERS: dict[type, _Handler] = {
    w.ContentBlockDelta: AnthropicStreamDecoder._delta,
    w.ContentBlockStart: AnthropicStreamDecoder._block_start,
    w.ContentBlockStop: AnthropicStreamDecoder._block_stop,
    w.MessageStart: AnthropicStreamDecoder._message_start,
    w.MessageDelta: AnthropicStreamDecoder._message_delta,
    w.MessageStop: AnthropicStreamDecoder._message_stop,
    w.Error: AnthropicStreamDecoder._error,
    Invalid: AnthropicStreamDecoder._invalid,
}
