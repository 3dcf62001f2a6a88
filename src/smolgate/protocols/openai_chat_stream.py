"""Chat Completions client-side stream encoder: canonical events → `chat.completion.chunk` SSE frames.

Split from openai_chat.py to keep modules small. Chunks share one pre-rendered prefix (id, created,
model) so each event costs one small orjson dump; tool calls are keyed by their own `index` (first
fragment carries id+name); `finish_reason` goes out as soon as the stop reason is known, the usage chunk
(`choices: []`) only when the client asked for `stream_options.include_usage`; `close()` sends
`data: [DONE]`; a `StreamError` is the in-stream `data: {"error": {...}}` the SDK raises on.
"""

from __future__ import annotations

from typing import Any

import orjson

from ..canonical import (
    BlockStart,
    Event,
    MessageDelta,
    MessageStart,
    MessageStop,
    ReasoningDelta,
    Request,
    StreamError,
    Text,
    TextDelta,
    ToolArgsDelta,
    ToolCall,
    Usage,
)
from ..errors import GatewayError
from . import openai_common as oc
from .base import StreamEncoder
from .common import new_id, now
from .sse import sse_event


def chat_id(rid: str) -> str:
    return rid if rid.startswith("chatcmpl-") else "chatcmpl-" + (rid or new_id("", 24))


class ChatStreamEncoder(StreamEncoder):
    """Canonical events → `chat.completion.chunk` SSE frames; tool calls keyed by their own index."""

    __slots__ = ("_done", "_include_usage", "_next_tool", "_prefix", "_req", "_tool_index", "_usage")

    def __init__(self, req: Request) -> None:
        self._req = req
        self._include_usage = req.extras.openai.include_usage
        self._prefix = b""
        self._tool_index: dict[int, int] = {}  # canonical block index → tool_calls[].index
        self._next_tool = 0
        self._usage: Usage | None = None
        self._done = False

    def _start(self, rid: str, model: str, created: int) -> None:
        self._prefix = (
            b'{"id":'
            + orjson.dumps(chat_id(rid))
            + b',"object":"chat.completion.chunk","created":'
            + str(created or now()).encode()
            + b',"model":'
            + orjson.dumps(model)
            + b',"choices":'
        )

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> bytes:
        if not self._prefix:
            self._start("", self._req.model, 0)
        return sse_event(
            self._prefix
            + b'[{"index":0,"delta":'
            + orjson.dumps(delta)
            + b',"logprobs":null,"finish_reason":'
            + orjson.dumps(finish)
            + b"}]}"
        )

    def feed(self, event: Event) -> bytes:
        if isinstance(event, TextDelta):
            return self._chunk({"content": event.text}) if event.text else b""
        if isinstance(event, ToolArgsDelta):
            idx = self._tool_index.get(event.index, 0)
            return (
                self._chunk({"tool_calls": [{"index": idx, "function": {"arguments": event.json}}]})
                if event.json
                else b""
            )
        if isinstance(event, ReasoningDelta):
            return self._chunk({"reasoning_content": event.text}) if event.text else b""
        if isinstance(event, MessageStart):
            self._start(event.id, event.model, event.created)
            return self._chunk({"role": "assistant", "content": ""})
        if isinstance(event, BlockStart):
            b = event.block
            if isinstance(b, ToolCall):
                idx = self._tool_index[event.index] = self._next_tool
                self._next_tool += 1
                return self._chunk(
                    {
                        "tool_calls": [
                            oc.thought_signature_out(
                                {
                                    "index": idx,
                                    "id": b.id,
                                    "type": "function",
                                    "function": {
                                        "name": b.name,
                                        "arguments": b.arguments if b.arguments != "{}" else "",
                                    },
                                },
                                b,
                            )
                        ]
                    }
                )
            if isinstance(b, Text) and b.text:
                return self._chunk({"content": b.text})
            return b""
        if isinstance(event, MessageDelta):
            if event.usage is not None:
                self._usage = event.usage
            if event.stop_reason is None:
                return b""
            return self._chunk({}, oc.FINISH_REASONS[event.stop_reason])
        if isinstance(event, MessageStop):
            if self._include_usage and not self._done:
                self._done = True
                if not self._prefix:
                    self._start("", self._req.model, 0)
                return sse_event(
                    self._prefix + b'[],"usage":' + orjson.dumps(oc.chat_usage(self._usage or Usage())) + b"}"
                )
            return b""
        if isinstance(event, StreamError):
            err = GatewayError(event.kind, event.message)
            return sse_event(orjson.dumps({"error": oc.error_object(err)}))
        return b""  # BlockStop, SignatureDelta: nothing on this wire

    def close(self) -> bytes:
        return b"data: [DONE]\n\n"
