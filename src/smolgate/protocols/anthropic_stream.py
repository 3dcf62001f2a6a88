"""Anthropic Messages streaming (SSE) both ways, plus the small tables both Anthropic modules share.

`AnthropicStreamEncoder`: canonical events → `event: <type>` + `data: {...}` frames (every frame carries
its `event:` line — the SDK silently drops data-only events). `AnthropicStreamDecoder`: upstream SSE bytes →
canonical events; `ping` ignored, `message_delta` held until `message_stop` (so the one canonical
`MessageDelta` carries final cumulative usage), `event: error` and truncation become `StreamError`.
"""

from __future__ import annotations

import re
from typing import Any

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
from .base import StreamDecoder, StreamEncoder
from .common import new_id
from .sse import SSEParser, sse_event

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
    if u.reasoning_tokens:
        out["output_tokens_details"] = {"thinking_tokens": u.reasoning_tokens}
    return out


def _int(v: Any) -> int:
    return v if isinstance(v, int) and not isinstance(v, bool) else 0


def usage_from_wire(d: Any, prev: Usage | None = None) -> Usage:
    """Anthropic usage (or a cumulative `message_delta.usage`) → canonical; absent fields keep `prev`."""
    base = prev or Usage()
    if not isinstance(d, dict):
        return base
    read = _int(d["cache_read_input_tokens"]) if "cache_read_input_tokens" in d else base.cached_tokens
    made = (
        _int(d["cache_creation_input_tokens"])
        if "cache_creation_input_tokens" in d
        else base.cache_creation_tokens
    )
    if "input_tokens" in d and d["input_tokens"] is not None:
        inp = _int(d["input_tokens"]) + read + made
    else:
        inp = base.input_tokens - base.cached_tokens - base.cache_creation_tokens + read + made
    out = _int(d["output_tokens"]) if "output_tokens" in d else base.output_tokens
    det = d.get("output_tokens_details")
    think = _int(det.get("thinking_tokens")) if isinstance(det, dict) else base.reasoning_tokens
    return Usage(
        input_tokens=inp,
        output_tokens=out,
        cached_tokens=read,
        cache_creation_tokens=made,
        reasoning_tokens=think,
    )


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
        try:
            d = orjson.loads(data)
        except orjson.JSONDecodeError:
            return self._fail(out, ErrorKind.UPSTREAM, "upstream sent an invalid stream event")
        if not isinstance(d, dict):
            return self._fail(out, ErrorKind.UPSTREAM, "upstream sent an invalid stream event")
        typ = d.get("type") or event
        if typ == "content_block_delta":
            wi = d.get("index")
            ci = self._map.get(wi) if isinstance(wi, int) else None
            delta = d.get("delta")
            if ci is None or not isinstance(delta, dict):
                return None
            dt = delta.get("type")
            if dt == "text_delta":
                text = delta.get("text")
                if isinstance(text, str) and text:
                    out.append(TextDelta(index=ci, text=text))
            elif dt == "input_json_delta":
                frag = delta.get("partial_json")
                if isinstance(frag, str) and frag:
                    out.append(ToolArgsDelta(index=ci, json=frag))
            elif dt == "thinking_delta":
                text = delta.get("thinking")
                if isinstance(text, str) and text:
                    out.append(ReasoningDelta(index=ci, text=text))
            elif dt == "signature_delta":
                sig = delta.get("signature")
                if isinstance(sig, str) and sig:
                    out.append(SignatureDelta(index=ci, signature=sig))
            return None
        if typ == "content_block_start":
            self._ensure_started(out)
            self._block_start(d, out)
        elif typ == "content_block_stop":
            wi = d.get("index")
            ci = self._map.get(wi) if isinstance(wi, int) else None
            if ci is not None and ci in self._open:
                self._open.discard(ci)
                out.append(BlockStop(index=ci))
        elif typ == "message_start":
            if self._state != _S.BEFORE:
                return None
            m = d.get("message")
            if not isinstance(m, dict):
                m = {}
            self._usage = usage_from_wire(m.get("usage"))
            self._state = _S.MESSAGE
            mid, model = m.get("id"), m.get("model")
            out.append(
                MessageStart(
                    id=mid if isinstance(mid, str) and mid else new_id("msg_"),
                    model=model if isinstance(model, str) else "",
                    usage=self._usage,
                )
            )
        elif typ == "message_delta":
            self._ensure_started(out)
            delta = d.get("delta")
            if isinstance(delta, dict):
                if isinstance(delta.get("stop_reason"), str):
                    self._stop = delta["stop_reason"]
                seq = delta.get("stop_sequence")
                self._stop_seq = seq if isinstance(seq, str) else self._stop_seq
            self._usage = usage_from_wire(d.get("usage"), self._usage)
        elif typ == "message_stop":
            self._ensure_started(out)
            for ci in sorted(self._open):
                out.append(BlockStop(index=ci))
            self._open.clear()
            stop = STOP_FROM_WIRE.get(self._stop or "end_turn", StopReason.END_TURN)
            out.append(
                MessageDelta(stop_reason=stop, stop_sequence=self._stop_seq, usage=self._usage or Usage())
            )
            out.append(MessageStop())
            self._state = _S.DONE
        elif typ == "error":
            err = d.get("error")
            if not isinstance(err, dict):
                err = {}
            msg = err.get("message")
            if not isinstance(msg, str):
                msg = "upstream stream error"
            etype = err.get("type")
            kind = (
                TYPE_TO_KIND.get(etype, ErrorKind.UPSTREAM) if isinstance(etype, str) else ErrorKind.UPSTREAM
            )
            self._fail(out, kind, msg)
        return None

    def _block_start(self, d: dict[str, Any], out: list[Event]) -> None:
        wi, cb = d.get("index"), d.get("content_block")
        if not isinstance(wi, int) or not isinstance(cb, dict) or wi in self._map or wi in self._skip:
            return
        typ = cb.get("type")
        for open_ci in sorted(self._open):  # a new block closes any still-open one (never interleave)
            out.append(BlockStop(index=open_ci))
        self._open.clear()
        ci = self._next
        if typ == "text":
            block: Text | ToolCall | Reasoning = Text(text="")
            first = cb.get("text")
            tail: Event | None = TextDelta(index=ci, text=first) if isinstance(first, str) and first else None
        elif typ == "tool_use":
            tid, name, inp = cb.get("id"), cb.get("name"), cb.get("input")
            block = ToolCall(
                id=tid if isinstance(tid, str) else new_id("toolu_"),
                name=name if isinstance(name, str) else "",
                arguments="",
            )
            tail = (
                ToolArgsDelta(index=ci, json=orjson.dumps(inp).decode())
                if isinstance(inp, dict) and inp
                else None
            )
        elif typ == "thinking":
            block = Reasoning()
            first = cb.get("thinking")
            tail = ReasoningDelta(index=ci, text=first) if isinstance(first, str) and first else None
        elif typ == "redacted_thinking":
            data = cb.get("data")
            block, tail = Reasoning(redacted=data if isinstance(data, str) else ""), None
        else:  # server_tool_use, web_search_tool_result, …: not modelled canonically
            self._skip.add(wi)
            return
        self._next += 1
        self._map[wi] = ci
        self._open.add(ci)
        out.append(BlockStart(index=ci, block=block))
        if tail is not None:
            out.append(tail)
