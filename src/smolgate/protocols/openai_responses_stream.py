"""Responses API output rendering: the `response` object, output items and the streaming event sequence.

Split from openai_responses.py to keep each module small. The stream encoder emits the full event
sequence the official SDK's `responses.stream()` accumulator checks: `response.created` →
`response.in_progress` → per item `output_item.added` → part/summary added → deltas → done events →
`output_item.done` → terminal `response.completed|incomplete|failed`, with one increasing
`sequence_number` and consistent `item_id` / `output_index` / `content_index`. No `[DONE]`.
"""

from __future__ import annotations

from typing import Any

import orjson

from ..canonical import (
    Block,
    BlockStart,
    BlockStop,
    Event,
    MessageDelta,
    MessageStart,
    MessageStop,
    Reasoning,
    ReasoningDelta,
    Request,
    StopReason,
    StreamError,
    Text,
    TextDelta,
    ToolArgsDelta,
    ToolCall,
    Usage,
)
from ..errors import ErrorKind
from . import openai_common as oc
from .base import StreamEncoder
from .common import new_id, now
from .sse import sse_event

_INCOMPLETE_REASON = {StopReason.MAX_TOKENS: "max_output_tokens", StopReason.CONTENT_FILTER: "content_filter"}


def resp_id(rid: str) -> str:
    return rid if rid.startswith("resp_") else "resp_" + (rid or new_id("", 24))


def _tool_choice(req: Request) -> Any:
    tc = req.tool_choice
    if tc is None:
        return "auto"
    return {"type": "function", "name": tc.name} if tc.mode == "tool" else tc.mode


def _text_format(req: Request) -> dict[str, Any]:
    rf = req.response_format
    if rf is None or rf.type == "text":
        return {"type": "text"}
    if rf.type == "json_object":
        return {"type": "json_object"}
    fmt: dict[str, Any] = {"type": "json_schema", "name": rf.name or "response", "schema": rf.schema or {}}
    if rf.strict is not None:
        fmt["strict"] = rf.strict
    return fmt


def response_object(req: Request, rid: str, model: str, created: int, status: str, output: list[dict[str, Any]],
                    usage: Usage | None, stop: StopReason | None = None,
                    error: dict[str, Any] | None = None) -> dict[str, Any]:
    reason = _INCOMPLETE_REASON.get(stop) if stop is not None and status == "incomplete" else None
    tc = req.tool_choice
    return {
        "id": resp_id(rid), "object": "response", "created_at": created or now(), "status": status,
        "completed_at": now() if status == "completed" else None, "error": error,
        "incomplete_details": {"reason": reason} if reason else None,
        "instructions": req.system_text or None, "max_output_tokens": req.max_tokens, "model": model,
        "output": output, "parallel_tool_calls": tc.parallel if tc is not None and tc.parallel is not None else True,
        "previous_response_id": None,
        "reasoning": {"effort": req.reasoning.effort if req.reasoning else None, "summary": None},
        "store": False, "temperature": req.temperature if req.temperature is not None else 1.0,
        "text": {"format": _text_format(req)}, "tool_choice": _tool_choice(req),
        "tools": [{"type": "function", "name": t.name, "description": t.description, "parameters": t.parameters,
                   "strict": False} for t in req.tools],
        "top_p": req.top_p if req.top_p is not None else 1.0, "truncation": "disabled",
        "usage": oc.responses_usage(usage) if usage is not None else None, "metadata": req.metadata or {},
        "background": False,
    }


def _text_part(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def _message_item(item_id: str, status: str, parts: list[dict[str, Any]]) -> dict[str, Any]:
    return {"id": item_id, "type": "message", "status": status, "role": "assistant", "content": parts}


def _call_item(item_id: str, status: str, call: ToolCall, arguments: str) -> dict[str, Any]:
    return {"id": item_id, "type": "function_call", "status": status, "call_id": call.id, "name": call.name,
            "arguments": arguments}


def _reasoning_item(item_id: str, block: Reasoning, summary: list[dict[str, Any]]) -> dict[str, Any]:
    item: dict[str, Any] = {"id": item_id, "type": "reasoning", "summary": summary}
    if block.redacted:
        item["encrypted_content"] = block.redacted
    return item


def output_items(blocks: list[Block]) -> list[dict[str, Any]]:
    """Canonical response blocks → output items; adjacent text blocks share one message item."""
    items: list[dict[str, Any]] = []
    for b in blocks:
        if isinstance(b, Text):
            if items and items[-1]["type"] == "message":
                items[-1]["content"].append(_text_part(b.text))
            else:
                items.append(_message_item(new_id("msg_"), "completed", [_text_part(b.text)]))
        elif isinstance(b, ToolCall):
            items.append(_call_item(new_id("fc_"), "completed", b, b.arguments or "{}"))
        elif isinstance(b, Reasoning):
            items.append(_reasoning_item(new_id("rs_"), b, [{"type": "summary_text", "text": b.text}]
                                         if b.text else []))
    return items


class ResponsesStreamEncoder(StreamEncoder):
    """Canonical events → Responses API SSE events (one output item per canonical block)."""

    def __init__(self, req: Request) -> None:
        self._req = req
        self._seq = 0
        self._id = ""
        self._model = req.model
        self._created = 0
        self._started = False
        self._ended = False
        self._output: list[dict[str, Any]] = []
        self._block: Text | ToolCall | Reasoning | None = None  # the open block
        self._item_id = ""
        self._buf: list[str] = []
        self._stop: StopReason | None = None
        self._usage: Usage | None = None

    def _ev(self, typ: str, payload: dict[str, Any]) -> bytes:
        data = {"type": typ, "sequence_number": self._seq, **payload}
        self._seq += 1
        return sse_event(orjson.dumps(data), typ)

    def _response(self, status: str, error: dict[str, Any] | None = None) -> dict[str, Any]:
        return response_object(self._req, self._id, self._model, self._created, status, list(self._output),
                               self._usage if status != "in_progress" else None, self._stop, error)

    def _start(self, rid: str = "", model: str = "", created: int = 0) -> bytes:
        self._started = True
        self._id = resp_id(rid)
        self._model = model or self._req.model
        self._created = created or now()
        return (self._ev("response.created", {"response": self._response("in_progress")})
                + self._ev("response.in_progress", {"response": self._response("in_progress")}))

    def feed(self, event: Event) -> bytes:
        if self._ended:
            return b""
        if isinstance(event, TextDelta):
            if not isinstance(self._block, Text) or not event.text:
                return b""
            self._buf.append(event.text)
            return self._ev("response.output_text.delta", {"item_id": self._item_id, "output_index": len(self._output),
                                                           "content_index": 0, "delta": event.text, "logprobs": []})
        if isinstance(event, ToolArgsDelta):
            if not isinstance(self._block, ToolCall) or not event.json:
                return b""
            self._buf.append(event.json)
            return self._ev("response.function_call_arguments.delta",
                            {"item_id": self._item_id, "output_index": len(self._output), "delta": event.json})
        if isinstance(event, ReasoningDelta):
            if not isinstance(self._block, Reasoning) or not event.text:
                return b""
            self._buf.append(event.text)
            return self._ev("response.reasoning_summary_text.delta",
                            {"item_id": self._item_id, "output_index": len(self._output), "summary_index": 0,
                             "delta": event.text})
        out = b"" if self._started or isinstance(event, MessageStart) else self._start()
        if isinstance(event, MessageStart):
            return self._start(event.id, event.model, event.created) if not self._started else b""
        if isinstance(event, BlockStart):
            return out + self._close_block() + self._open_block(event.block)
        if isinstance(event, BlockStop):
            return out + self._close_block()
        if isinstance(event, MessageDelta):
            if event.stop_reason is not None:
                self._stop = event.stop_reason
            if event.usage is not None:
                self._usage = event.usage
            return out
        if isinstance(event, MessageStop):
            self._ended = True
            status = "incomplete" if self._stop in _INCOMPLETE_REASON else "completed"
            return out + self._close_block() + self._ev(f"response.{status}", {"response": self._response(status)})
        if isinstance(event, StreamError):
            self._ended = True
            code = event.kind if event.kind in ErrorKind._value2member_map_ else ErrorKind.UPSTREAM.value
            err = {"code": code, "message": event.message}
            return (out + self._ev("error", {"code": code, "message": event.message, "param": None})
                    + self._ev("response.failed", {"response": self._response("failed", err)}))
        return out  # SignatureDelta: no Responses field

    def _open_block(self, block: Text | ToolCall | Reasoning) -> bytes:
        self._block, self._buf = block, []
        idx = len(self._output)
        if isinstance(block, Text):
            self._item_id = new_id("msg_")
            out = self._ev("response.output_item.added",
                           {"output_index": idx, "item": _message_item(self._item_id, "in_progress", [])})
            out += self._ev("response.content_part.added", {"item_id": self._item_id, "output_index": idx,
                                                            "content_index": 0, "part": _text_part("")})
            return out + (self.feed(TextDelta(index=0, text=block.text)) if block.text else b"")
        if isinstance(block, ToolCall):
            self._item_id = new_id("fc_")
            out = self._ev("response.output_item.added",
                           {"output_index": idx, "item": _call_item(self._item_id, "in_progress", block, "")})
            initial = block.arguments if block.arguments not in ("", "{}") else ""
            return out + (self.feed(ToolArgsDelta(index=0, json=initial)) if initial else b"")
        self._item_id = new_id("rs_")
        out = self._ev("response.output_item.added",
                       {"output_index": idx, "item": _reasoning_item(self._item_id, block, [])})
        out += self._ev("response.reasoning_summary_part.added",
                        {"item_id": self._item_id, "output_index": idx, "summary_index": 0,
                         "part": {"type": "summary_text", "text": ""}})
        return out + (self.feed(ReasoningDelta(index=0, text=block.text)) if block.text else b"")

    def _close_block(self) -> bytes:
        block, self._block = self._block, None
        if block is None:
            return b""
        idx, iid, text = len(self._output), self._item_id, "".join(self._buf)
        base = {"item_id": iid, "output_index": idx}
        if isinstance(block, Text):
            part = _text_part(text)
            item = _message_item(iid, "completed", [part])
            out = self._ev("response.output_text.done", {**base, "content_index": 0, "text": text, "logprobs": []})
            out += self._ev("response.content_part.done", {**base, "content_index": 0, "part": part})
        elif isinstance(block, ToolCall):
            text = text or "{}"
            item = _call_item(iid, "completed", block, text)
            out = self._ev("response.function_call_arguments.done", {**base, "name": block.name, "arguments": text})
        else:
            part = {"type": "summary_text", "text": text}
            item = _reasoning_item(iid, block, [part])
            out = self._ev("response.reasoning_summary_text.done", {**base, "summary_index": 0, "text": text})
            out += self._ev("response.reasoning_summary_part.done", {**base, "summary_index": 0, "part": part})
        self._output.append(item)
        return out + self._ev("response.output_item.done", {"output_index": idx, "item": item})
