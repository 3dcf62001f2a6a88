"""Responses API output rendering: the `response` object, output items and the streaming event sequence.

Split from openai_responses.py to keep each module small. The stream encoder emits the full event
sequence the official SDK's `responses.stream()` accumulator checks: `response.created` →
`response.in_progress` → per item `output_item.added` → part/summary added → deltas → done events →
`output_item.done` → terminal `response.completed|incomplete|failed`, with one increasing
`sequence_number` and consistent `item_id` / `output_index` / `content_index`. No `[DONE]`.

Items are built in full (what the response store keeps) and shown to the client through `client_view`:
`encrypted_content` only when the client's `include` asks for `reasoning.encrypted_content`, as the real
API does. Calls of custom / namespaced tools are rendered as `custom_tool_call` / namespaced
`function_call` items (tool_kinds.py). Signed reasoning of other providers is packed into
`encrypted_content` (reasoning_blob.py); a Gemini call's thoughtSignature rides in a reasoning item of
its own just before the call ("synthetic": shown only when encrypted content is included).
"""

from __future__ import annotations

from typing import Any

import orjson

from .. import tool_kinds as tk
from ..canonical import (
    Block,
    BlockStart,
    BlockStop,
    Event,
    MessageDelta,
    MessageStart,
    MessageStop,
    Opaque,
    Reasoning,
    ReasoningDelta,
    Request,
    ResponsesClient,
    SignatureDelta,
    StopReason,
    StreamError,
    Text,
    TextDelta,
    Tool,
    ToolArgsDelta,
    ToolCall,
    Usage,
)
from . import openai_common as oc
from . import reasoning_blob
from .base import StreamEncoder
from .common import new_id, now
from .openai_responses_input import PROTOCOL
from .sse import sse_event

_INCOMPLETE_REASON = {StopReason.MAX_TOKENS: "max_output_tokens", StopReason.CONTENT_FILTER: "content_filter"}
ENCRYPTED = "reasoning.encrypted_content"
SYNTHETIC = "_smolgate_synthetic"  # marks a stored item the client sees only with encrypted content


def mint_id(prefix: str) -> str:
    """An id in OpenAI's shape (prefix + 48 hex digits); unguessable, as stored responses are read by id."""
    return new_id(prefix, 48)


def resp_id(rid: str) -> str:
    return rid if rid.startswith("resp_") else "resp_" + (rid or new_id("", 24))


_NO_CLIENT = ResponsesClient(store=False)  # a request that did not come from a Responses client


def client_options(req: Request) -> ResponsesClient:
    return req.extras.responses.client or _NO_CLIENT


def includes_encrypted(req: Request) -> bool:
    return ENCRYPTED in client_options(req).include


def client_view(items: list[dict[str, Any]], encrypted: bool) -> list[dict[str, Any]]:
    """Stored (full) items → what a client sees: no encrypted_content unless asked; no synthetic items then."""
    out = []
    for it in items:
        if it.get(SYNTHETIC):
            if not encrypted:
                continue
            it = {k: v for k, v in it.items() if k != SYNTHETIC}
        if not encrypted and "encrypted_content" in it and it.get("type") == "reasoning":
            it = {k: v for k, v in it.items() if k != "encrypted_content"}
        out.append(it)
    return out


def tool_defs(req: Request) -> list[dict[str, Any]]:
    """Canonical tools → Responses tools, namespaces regrouped, each client definition's extra keys kept."""
    out: list[dict[str, Any]] = []
    groups: dict[str, dict[str, Any]] = {}
    descriptions = req.extras.responses.namespaces
    for t in req.tools:
        raw = t.raw or {}
        if t.kind == "custom":
            d = {**raw, "type": "custom", "name": t.local_name or t.name}
        else:
            d = {
                "strict": False,
                **raw,
                "type": "function",
                "name": t.local_name or t.name,
                "parameters": t.parameters,
            }
            if t.description:
                d["description"] = t.description
        if t.namespace:
            group = groups.get(t.namespace)
            if group is None:
                group = groups[t.namespace] = {
                    "type": "namespace",
                    "name": t.namespace,
                    "description": descriptions.get(t.namespace, ""),
                    "tools": [],
                }
                out.append(group)
            group["tools"].append(d)
        else:
            out.append(d)
    return out + tk.hosted_tools(req)


def _tool_choice(req: Request) -> Any:
    raw = req.extras.responses.tool_choice
    if raw is not None:
        return raw
    tc = req.tool_choice
    if tc is None:
        return "auto"
    if tc.mode != "tool":
        return tc.mode
    tool = tk.lookup(req).get(tc.name or "")
    if tool is None:
        return {"type": "function", "name": tc.name}
    choice = {"type": tool.kind, "name": tool.local_name or tool.name}
    return {**choice, "namespace": tool.namespace} if tool.namespace else choice


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


def response_object(
    req: Request,
    rid: str,
    model: str,
    created: int,
    status: str,
    output: list[dict[str, Any]],
    usage: Usage | None,
    stop: StopReason | None = None,
    error: dict[str, Any] | None = None,
) -> dict[str, Any]:
    reason = _INCOMPLETE_REASON.get(stop) if stop is not None and status == "incomplete" else None
    tc = req.tool_choice
    opts = client_options(req)
    r = req.reasoning
    return {
        "id": resp_id(rid),
        "object": "response",
        "created_at": created or now(),
        "status": status,
        "completed_at": now() if status == "completed" else None,
        "error": error,
        "incomplete_details": {"reason": reason} if reason else None,
        "instructions": req.system_text or None,
        "max_output_tokens": req.max_tokens,
        "model": model,
        "output": output,
        "parallel_tool_calls": tc.parallel if tc is not None and tc.parallel is not None else True,
        "previous_response_id": opts.previous_response_id,
        "reasoning": {
            "effort": r.effort if r else None,
            "summary": "auto" if r is not None and r.include_thoughts else None,
        },
        "store": opts.store,
        "temperature": req.temperature if req.temperature is not None else 1.0,
        "text": {"format": _text_format(req)},
        "tool_choice": _tool_choice(req),
        "tools": tool_defs(req),
        "top_p": req.top_p if req.top_p is not None else 1.0,
        "truncation": "disabled",
        "usage": oc.responses_usage(usage) if usage is not None else None,
        "metadata": req.metadata or {},
        "background": False,
    }


def _text_part(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def _message_item(item_id: str, status: str, parts: list[dict[str, Any]]) -> dict[str, Any]:
    return {"id": item_id, "type": "message", "status": status, "role": "assistant", "content": parts}


def _call_item(
    item_id: str, status: str, call: ToolCall, tool: Tool | None, arguments: str
) -> dict[str, Any]:
    name = tool.local_name or tool.name if tool is not None else call.name
    if tool is not None and tool.kind == "custom":
        item = {
            "id": item_id,
            "type": "custom_tool_call",
            "status": status,
            "call_id": call.id,
            "name": name,
            "input": tk.custom_input(arguments) if arguments else "",
        }
    else:
        item = {
            "id": item_id,
            "type": "function_call",
            "status": status,
            "call_id": call.id,
            "name": name,
            "arguments": arguments,
        }
    if tool is not None and tool.namespace:
        item["namespace"] = tool.namespace
    return item


def _reasoning_item(item_id: str, block: Reasoning, summary: list[dict[str, Any]]) -> dict[str, Any]:
    item: dict[str, Any] = {"id": item_id, "type": "reasoning", "summary": summary}
    if reasoning_blob.needs_pack(block):
        item["encrypted_content"] = reasoning_blob.pack(block)
    elif block.redacted:
        item["encrypted_content"] = block.redacted
    return item


def _signature_item(call: ToolCall) -> dict[str, Any]:
    """A Gemini thoughtSignature on a call: a reasoning item of its own, so the client can echo it back."""
    return {
        "id": mint_id("rs_"),
        "type": "reasoning",
        "summary": [],
        SYNTHETIC: True,
        "encrypted_content": reasoning_blob.pack(Reasoning(), {call.id: call.signature or ""}),
    }


def _opaque_item(block: Opaque) -> dict[str, Any] | None:
    if block.protocol != PROTOCOL:
        return None
    return block.data if block.data.get("id") else {**block.data, "id": mint_id("ti_")}


def output_items(blocks: list[Block], req: Request) -> list[dict[str, Any]]:
    """Canonical response blocks → full output items; adjacent text blocks share one message item."""
    tools = tk.lookup(req)
    items: list[dict[str, Any]] = []
    for b in blocks:
        if isinstance(b, Text):
            if items and items[-1]["type"] == "message":
                items[-1]["content"].append(_text_part(b.text))
            else:
                items.append(_message_item(mint_id("msg_"), "completed", [_text_part(b.text)]))
        elif isinstance(b, ToolCall):
            if b.signature:
                items.append(_signature_item(b))
            tool = tools.get(b.name)
            prefix = "ctc_" if tool is not None and tool.kind == "custom" else "fc_"
            items.append(_call_item(mint_id(prefix), "completed", b, tool, b.arguments or "{}"))
        elif isinstance(b, Reasoning):
            items.append(
                _reasoning_item(
                    mint_id("rs_"), b, [{"type": "summary_text", "text": b.text}] if b.text else []
                )
            )
        elif isinstance(b, Opaque):
            item = _opaque_item(b)
            if item is not None:
                items.append(item)
    return items


class ResponsesStreamEncoder(StreamEncoder):
    """Canonical events → Responses API SSE events (one output item per canonical block).

    `full_output` collects every item in full (for the response store); the client sees `client_view`."""

    def __init__(self, req: Request, rid: str | None = None) -> None:
        self._req = req
        self._tools = tk.lookup(req)
        self._encrypted = includes_encrypted(req)
        self._fixed_id = rid  # smolgate's own response id (the store's key) instead of the upstream's
        self._seq = 0
        self._id = ""
        self._model = req.model
        self._created = 0
        self._started = False
        self._ended = False
        self._output: list[dict[str, Any]] = []  # as the client saw them
        self.full_output: list[dict[str, Any]] = []
        self.final: dict[str, Any] | None = None  # the terminal response object, once sent
        self._block: Text | ToolCall | Reasoning | None = None  # the open block
        self._item_id = ""
        self._buf: list[str] = []
        self._sig: list[str] = []
        self._stop: StopReason | None = None
        self._usage: Usage | None = None

    def _ev(self, typ: str, payload: dict[str, Any]) -> bytes:
        data = {"type": typ, "sequence_number": self._seq, **payload}
        self._seq += 1
        return sse_event(orjson.dumps(data), typ)

    def _response(self, status: str, error: dict[str, Any] | None = None) -> dict[str, Any]:
        return response_object(
            self._req,
            self._id,
            self._model,
            self._created,
            status,
            list(self._output),
            self._usage if status != "in_progress" else None,
            self._stop,
            error,
        )

    def _start(self, rid: str = "", model: str = "", created: int = 0) -> bytes:
        self._started = True
        self._id = self._fixed_id or resp_id(rid)
        self._model = model or self._req.model
        self._created = created or now()
        return self._ev("response.created", {"response": self._response("in_progress")}) + self._ev(
            "response.in_progress", {"response": self._response("in_progress")}
        )

    def feed(self, event: Event) -> bytes:
        if self._ended:
            return b""
        if isinstance(event, TextDelta):
            if not isinstance(self._block, Text) or not event.text:
                return b""
            self._buf.append(event.text)
            return self._ev(
                "response.output_text.delta",
                {
                    "item_id": self._item_id,
                    "output_index": len(self._output),
                    "content_index": 0,
                    "delta": event.text,
                    "logprobs": [],
                },
            )
        if isinstance(event, ToolArgsDelta):
            if not isinstance(self._block, ToolCall) or not event.json:
                return b""
            self._buf.append(event.json)
            if self._custom:
                return b""  # a custom tool's input is sent whole when the call is complete
            return self._ev(
                "response.function_call_arguments.delta",
                {"item_id": self._item_id, "output_index": len(self._output), "delta": event.json},
            )
        if isinstance(event, ReasoningDelta):
            if not isinstance(self._block, Reasoning) or not event.text:
                return b""
            self._buf.append(event.text)
            return self._ev(
                "response.reasoning_summary_text.delta",
                {
                    "item_id": self._item_id,
                    "output_index": len(self._output),
                    "summary_index": 0,
                    "delta": event.text,
                },
            )
        if isinstance(event, SignatureDelta):
            if isinstance(self._block, Reasoning) and event.signature:
                self._sig.append(event.signature)
            return b""
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
            out += self._close_block()
            self.final = self._response(status)
            return out + self._ev(f"response.{status}", {"response": self.final})
        if isinstance(event, StreamError):
            self._ended = True
            code = event.kind.value
            err = {"code": code, "message": event.message}
            return (
                out
                + self._ev("error", {"code": code, "message": event.message, "param": None})
                + self._ev("response.failed", {"response": self._response("failed", err)})
            )
        return out

    @property
    def _custom(self) -> bool:
        tool = self._tools.get(self._block.name) if isinstance(self._block, ToolCall) else None
        return tool is not None and tool.kind == "custom"

    def _whole_item(self, full: dict[str, Any]) -> bytes:
        """An item that is complete when it starts (a synthetic signature item)."""
        self.full_output.append(full)
        shown = client_view([full], self._encrypted)
        if not shown:
            return b""
        idx = len(self._output)
        self._output.append(shown[0])
        return self._ev("response.output_item.added", {"output_index": idx, "item": shown[0]}) + self._ev(
            "response.output_item.done", {"output_index": idx, "item": shown[0]}
        )

    def _open_block(self, block: Text | ToolCall | Reasoning) -> bytes:
        out = b""
        if isinstance(block, ToolCall) and block.signature:
            out += self._whole_item(_signature_item(block))
        self._block, self._buf, self._sig = block, [], []
        idx = len(self._output)
        if isinstance(block, Text):
            self._item_id = mint_id("msg_")
            out += self._ev(
                "response.output_item.added",
                {"output_index": idx, "item": _message_item(self._item_id, "in_progress", [])},
            )
            out += self._ev(
                "response.content_part.added",
                {"item_id": self._item_id, "output_index": idx, "content_index": 0, "part": _text_part("")},
            )
            return out + (self.feed(TextDelta(index=0, text=block.text)) if block.text else b"")
        if isinstance(block, ToolCall):
            tool = self._tools.get(block.name)
            self._item_id = mint_id("ctc_" if self._custom else "fc_")
            out += self._ev(
                "response.output_item.added",
                {"output_index": idx, "item": _call_item(self._item_id, "in_progress", block, tool, "")},
            )
            initial = block.arguments if block.arguments not in ("", "{}") else ""
            return out + (self.feed(ToolArgsDelta(index=0, json=initial)) if initial else b"")
        self._item_id = mint_id("rs_")
        shown = client_view([_reasoning_item(self._item_id, block, [])], self._encrypted)[0]
        out += self._ev("response.output_item.added", {"output_index": idx, "item": shown})
        out += self._ev(
            "response.reasoning_summary_part.added",
            {
                "item_id": self._item_id,
                "output_index": idx,
                "summary_index": 0,
                "part": {"type": "summary_text", "text": ""},
            },
        )
        return out + (self.feed(ReasoningDelta(index=0, text=block.text)) if block.text else b"")

    def _close_block(self) -> bytes:
        custom = self._custom
        block, self._block = self._block, None
        if block is None:
            return b""
        idx, iid, text = len(self._output), self._item_id, "".join(self._buf)
        base = {"item_id": iid, "output_index": idx}
        if isinstance(block, Text):
            part = _text_part(text)
            item = _message_item(iid, "completed", [part])
            out = self._ev(
                "response.output_text.done", {**base, "content_index": 0, "text": text, "logprobs": []}
            )
            out += self._ev("response.content_part.done", {**base, "content_index": 0, "part": part})
        elif isinstance(block, ToolCall):
            text = text or "{}"
            item = _call_item(iid, "completed", block, self._tools.get(block.name), text)
            if custom:
                out = self._ev("response.custom_tool_call_input.delta", {**base, "delta": item["input"]})
                out += self._ev("response.custom_tool_call_input.done", {**base, "input": item["input"]})
            else:
                out = self._ev(
                    "response.function_call_arguments.done", {**base, "name": item["name"], "arguments": text}
                )
        else:
            part = {"type": "summary_text", "text": text}
            signature = "".join(self._sig) or block.signature
            item = _reasoning_item(
                iid, Reasoning(text=text, signature=signature, redacted=block.redacted), [part]
            )
            out = self._ev("response.reasoning_summary_text.done", {**base, "summary_index": 0, "text": text})
            out += self._ev(
                "response.reasoning_summary_part.done", {**base, "summary_index": 0, "part": part}
            )
        self.full_output.append(item)
        shown = client_view([item], self._encrypted)[0]
        self._output.append(shown)
        return out + self._ev("response.output_item.done", {"output_index": idx, "item": shown})
