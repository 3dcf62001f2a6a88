"""Gemini stream codecs: canonical events → `data: {GenerateContentResponse}` frames (client side) and
upstream SSE frames → canonical events (provider side). Response/error object builders shared with
`gemini.GeminiCodec` live here too.
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from ..canonical import (
    BlockStart,
    BlockStop,
    Event,
    MessageDelta,
    MessageStart,
    MessageStop,
    ReasoningDelta,
    SignatureDelta,
    StopReason,
    StreamError,
    Text,
    TextDelta,
    ToolArgsDelta,
    ToolCall,
    Usage,
)
from ..canonical import Reasoning as ReasoningBlock
from ..errors import DEFAULT_STATUS, ErrorKind, from_status
from . import gemini_wire
from .base import StreamDecoder, StreamEncoder
from .common import dumps, new_id
from .gemini_parts import (
    FINISH_OUT,
    KIND_NAMES,
    SIG_PREFIX,
    args_object,
    count_usage,
    finish_in,
    gemini_sig,
    status_name,
    usage_out,
)
from .sse import SSEParser, sse_event
from .wire import Invalid


def chunk(
    parts: list[dict[str, Any]], rid: str, model: str, finish: str | None = None, usage: Usage | None = None
) -> dict[str, Any]:
    cand: dict[str, Any] = {"content": {"role": "model", "parts": parts}, "index": 0}
    if finish:
        cand["finishReason"] = finish
    out: dict[str, Any] = {"candidates": [cand]}
    if usage is not None:
        out["usageMetadata"] = usage_out(usage)
    out["modelVersion"] = model
    out["responseId"] = rid
    return out


def error_obj(status: int, message: str, kind: ErrorKind | None, param: str | None = None) -> dict[str, Any]:
    name = status_name(status)
    if kind in KIND_NAMES and status in (401, 403, 429, 504):
        name = KIND_NAMES[kind]
    err: dict[str, Any] = {"code": status, "message": message, "status": name}
    if param:
        err["details"] = [
            {
                "@type": "type.googleapis.com/google.rpc.BadRequest",
                "fieldViolations": [{"field": param, "description": message}],
            }
        ]
    return {"error": err}


class GeminiStreamEncoder(StreamEncoder):
    """Canonical events → `data: {GenerateContentResponse}` frames with only the new parts."""

    __slots__ = ("calls", "model", "rid", "show_thoughts", "sigs", "stop", "texts", "usage")

    def __init__(self, show_thoughts: bool = True) -> None:
        self.show_thoughts = show_thoughts  # the client's includeThoughts; signatures flow regardless
        self.rid = new_id("resp_")
        self.model = ""
        self.calls: dict[int, ToolCall] = {}
        self.sigs: dict[int, str] = {}
        self.texts: set[int] = set()  # reasoning blocks that had text (their signature part is a thought)
        self.stop = StopReason.END_TURN
        self.usage = Usage()

    def _frame(
        self, parts: list[dict[str, Any]], finish: str | None = None, usage: Usage | None = None
    ) -> bytes:
        return sse_event(dumps(chunk(parts, self.rid, self.model, finish, usage)))

    def feed(self, ev: Event) -> bytes:
        if isinstance(ev, TextDelta):
            return self._frame([{"text": ev.text}]) if ev.text else b""
        if isinstance(ev, ReasoningDelta):
            if not ev.text or not self.show_thoughts:
                return b""
            self.texts.add(ev.index)
            return self._frame([{"text": ev.text, "thought": True}])
        if isinstance(ev, ToolArgsDelta):
            call = self.calls.get(ev.index)
            if call is not None:
                call.arguments += ev.json
            return b""
        if isinstance(ev, BlockStart):
            if isinstance(ev.block, ToolCall):
                self.calls[ev.index] = ToolCall(
                    id=ev.block.id,
                    name=ev.block.name,
                    arguments=ev.block.arguments,
                    signature=ev.block.signature,
                )
            elif isinstance(ev.block, ReasoningBlock) and ev.block.text and self.show_thoughts:
                self.texts.add(ev.index)
                return self._frame([{"text": ev.block.text, "thought": True}])
            elif isinstance(ev.block, Text) and ev.block.text:
                return self._frame([{"text": ev.block.text}])
            return b""
        if isinstance(ev, SignatureDelta):
            if ev.index in self.calls:
                self.calls[ev.index].signature = ev.signature
            else:
                self.sigs[ev.index] = ev.signature
            return b""
        if isinstance(ev, BlockStop):
            call = self.calls.pop(ev.index, None)
            if call is not None:
                part: dict[str, Any] = {
                    "functionCall": {"id": call.id, "name": call.name, "args": args_object(call.arguments)}
                }
                if call.signature:
                    part["thoughtSignature"] = call.signature
                return self._frame([part])
            sig = gemini_sig(self.sigs.pop(ev.index, None))
            if sig:
                part = {"text": "", "thoughtSignature": sig}
                if ev.index in self.texts:
                    part["thought"] = True
                return self._frame([part])
            return b""
        if isinstance(ev, MessageStart):
            self.model = ev.model
            if ev.id:
                self.rid = ev.id
            if ev.usage is not None:
                self.usage = ev.usage
            return b""
        if isinstance(ev, MessageDelta):
            if ev.stop_reason is not None:
                self.stop = ev.stop_reason
            if ev.usage is not None:
                self.usage = ev.usage
            return b""
        if isinstance(ev, MessageStop):
            return self._frame([{"text": ""}], FINISH_OUT[self.stop], self.usage)
        if isinstance(ev, StreamError):
            return sse_event(dumps(error_obj(DEFAULT_STATUS[ev.kind], ev.message, ev.kind)))
        return b""


# ---------------------------------------------------------------- upstream side: stream decoder


class GeminiStreamDecoder(StreamDecoder):
    """`data: {GenerateContentResponse}` frames → canonical events; synthesises block start/stop."""

    __slots__ = (
        "_done",
        "_finish",
        "_id",
        "_index",
        "_model",
        "_open",
        "_sse",
        "_started",
        "_tool",
        "_usage",
    )

    def __init__(self) -> None:
        self._sse = SSEParser()
        self._started = False
        self._open: str | None = None  # "text" | "reasoning"
        self._index = -1
        self._finish: str | None = None
        self._usage = Usage()
        self._done = False
        self._tool = False

    def feed(self, chunk: bytes) -> list[Event]:
        out: list[Event] = []
        for msg in self._sse.feed(chunk):
            if not self._done:
                self._message(msg.data, out)
        return out

    def close(self) -> list[Event]:
        out: list[Event] = []
        for msg in self._sse.flush():
            if not self._done:
                self._message(msg.data, out)
        if self._done:
            return out
        if self._finish is not None:
            self._end(out)
            return out
        self._done = True
        out.append(StreamError(kind=ErrorKind.UPSTREAM, message="Gemini stream ended before finishReason"))
        return out

    def _close_block(self, out: list[Event]) -> None:
        if self._open is not None:
            out.append(BlockStop(index=self._index))
            self._open = None

    def _open_block(self, kind: str, out: list[Event]) -> None:
        if self._open != kind:
            self._close_block(out)
            self._index += 1
            self._open = kind
            out.append(
                BlockStart(index=self._index, block=Text(text="") if kind == "text" else ReasoningBlock())
            )

    def _end(self, out: list[Event]) -> None:
        self._close_block(out)
        out.append(MessageDelta(stop_reason=finish_in(self._finish or "STOP", self._tool), usage=self._usage))
        out.append(MessageStop())
        self._done = True

    def _message(self, data: str, out: list[Event]) -> None:
        chunk = gemini_wire.decode(data)
        if isinstance(chunk, Invalid):
            if not chunk.json:
                self._malformed(out)
            return  # JSON that is not an object carries nothing
        if chunk.error is not None:
            self._fail(chunk.error, out)
            return
        if not self._started:
            self._started = True
            self._id = chunk.response_id or new_id("resp_")
            self._model = chunk.model_version or ""
            out.append(MessageStart(id=self._id, model=self._model, created=int(time.time())))
        if chunk.usage_metadata is not None:
            self._usage = _usage(chunk.usage_metadata)
        if not chunk.candidates:  # usage only, or a blocked prompt
            feedback = chunk.prompt_feedback
            if feedback is not None and feedback.block_reason:
                self._finish = "SAFETY"
            if self._finish is not None:
                self._end(out)
            return
        cand = chunk.candidates[0]
        for part in (cand.content.parts if cand.content is not None else None) or ():
            self._part(part, out)
            if self._done:
                return
        if cand.finish_reason is not None:
            self._finish = cand.finish_reason
            self._close_block(out)
            if chunk.usage_metadata is not None:
                self._end(out)

    def _malformed(self, out: list[Event]) -> None:
        self._done = True
        out.append(StreamError(kind=ErrorKind.UPSTREAM, message="Gemini sent a malformed stream chunk"))

    def _fail(self, err: gemini_wire.Status | str, out: list[Event]) -> None:
        self._done = True
        if isinstance(err, str):
            out.append(StreamError(kind=from_status(500, "").kind, message=err or "upstream error"))
            return
        kind = from_status(err.code if err.code is not None else 500, "").kind
        out.append(StreamError(kind=kind, message=err.message or "upstream error"))

    def _part(self, part: gemini_wire.Part, out: list[Event]) -> None:
        sig = part.thought_signature or None
        fc = part.function_call
        if fc is not None:
            try:
                args = orjson.loads(memoryview(fc.args)) or {}
            except orjson.JSONDecodeError:  # JSON orjson refuses (a number out of range): as before
                self._malformed(out)
                return
            self._close_block(out)
            self._index += 1
            self._tool = True
            call = ToolCall(id=fc.id or new_id("call_"), name=fc.name or "", arguments="", signature=sig)
            out.append(BlockStart(index=self._index, block=call))
            out.append(ToolArgsDelta(index=self._index, json=orjson.dumps(args).decode()))
            out.append(BlockStop(index=self._index))
            return
        text = part.text or ""
        if part.thought is True:
            if text or sig:
                self._open_block("reasoning", out)
            if text:
                out.append(ReasoningDelta(index=self._index, text=text))
            if sig:
                out.append(SignatureDelta(index=self._index, signature=SIG_PREFIX + sig))
                self._close_block(out)
            return
        if text:
            self._open_block("text", out)
            out.append(TextDelta(index=self._index, text=text))
        if sig:
            self._open_block("reasoning", out)
            out.append(SignatureDelta(index=self._index, signature=SIG_PREFIX + sig))
            self._close_block(out)


def _usage(m: gemini_wire.UsageMetadata) -> Usage:
    return count_usage(
        prompt=(m.prompt_token_count or 0) + (m.tool_use_prompt_token_count or 0),
        candidates=m.candidates_token_count or 0,
        thoughts=m.thoughts_token_count or 0,
        total=m.total_token_count or 0,
        cached=m.cached_content_token_count or 0,
    )
