"""Ollama NDJSON stream codecs: canonical events → chat/generate lines (client side) and upstream chat
lines → canonical events (provider side), plus the response-line builders `ollama` shares.
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
    Reasoning,
    ReasoningDelta,
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
from .common import loads_json, new_id
from .sse import LineSplitter


def iso(ts: float | None = None) -> str:
    t = time.time() if ts is None else ts
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int((t % 1) * 1e6):06d}Z"


def done_reason(stop: StopReason) -> str:
    return "length" if stop == StopReason.MAX_TOKENS else "stop"


def final(usage: Usage, stop: StopReason, total_ns: int) -> dict[str, Any]:
    return {
        "done": True,
        "done_reason": done_reason(stop),
        "total_duration": total_ns,
        "load_duration": 0,
        "prompt_eval_count": usage.input_tokens,
        "prompt_eval_duration": 0,
        "eval_count": usage.output_tokens,
        "eval_duration": 0,
    }


def tool_calls_out(calls: list[ToolCall], first_index: int = 0) -> list[dict[str, Any]]:
    """Calls as current Ollama sends them: `id` on the call, `function.index` counting the calls of the whole
    response (a stream's lines included), so clients that assemble streams (litellm) keep parallel calls apart
    and can answer each with its `tool_call_id`."""
    out = []
    for k, c in enumerate(calls):
        try:
            args = loads_json(c.arguments) if c.arguments.strip() else {}  # too deep counts as not JSON
        except orjson.JSONDecodeError:
            args = {"_raw": c.arguments}
        out.append(
            {
                "id": c.id or new_id("call_"),
                "function": {
                    "index": first_index + k,
                    "name": c.name,
                    "arguments": args if isinstance(args, dict) else {"_value": args},
                },
            }
        )
    return out


class OllamaStreamEncoder(StreamEncoder):
    """Canonical events → NDJSON lines; `generate` renders `response` instead of `message`."""

    __slots__ = ("calls", "created", "generate", "model", "sent_calls", "stop", "t0", "usage")

    def __init__(self, generate: bool, model: str) -> None:
        self.generate = generate
        self.model = model
        self.created = iso()
        self.t0 = time.monotonic_ns()
        self.calls: dict[int, ToolCall] = {}
        self.sent_calls = 0  # calls already on the wire: the next one's `function.index`
        self.stop = StopReason.END_TURN
        self.usage = Usage()

    def _line(
        self,
        content: str = "",
        thinking: str | None = None,
        tool_calls: list[ToolCall] | None = None,
        final: dict[str, Any] | None = None,
    ) -> bytes:
        obj: dict[str, Any] = {"model": self.model, "created_at": self.created}
        if self.generate:
            obj["response"] = content
            if thinking is not None:
                obj["thinking"] = thinking
        else:
            msg: dict[str, Any] = {"role": "assistant", "content": content}
            if thinking is not None:
                msg["thinking"] = thinking
            if tool_calls:
                msg["tool_calls"] = tool_calls_out(tool_calls, self.sent_calls)
                self.sent_calls += len(tool_calls)
            obj["message"] = msg
        if final is None:
            obj["done"] = False
        else:
            obj.update(final)
        return orjson.dumps(obj) + b"\n"

    def feed(self, ev: Event) -> bytes:
        if isinstance(ev, TextDelta):
            return self._line(ev.text) if ev.text else b""
        if isinstance(ev, ReasoningDelta):
            return self._line(thinking=ev.text) if ev.text else b""
        if isinstance(ev, ToolArgsDelta):
            call = self.calls.get(ev.index)
            if call is not None:
                call.arguments += ev.json
            return b""
        if isinstance(ev, BlockStart):
            b = ev.block
            if isinstance(b, ToolCall):
                self.calls[ev.index] = ToolCall(id=b.id, name=b.name, arguments=b.arguments)
            elif isinstance(b, Text) and b.text:
                return self._line(b.text)
            elif isinstance(b, Reasoning) and b.text:
                return self._line(thinking=b.text)
            return b""
        if isinstance(ev, BlockStop):
            call = self.calls.pop(ev.index, None)
            if call is not None and not self.generate:
                return self._line(tool_calls=[call])
            return b""
        if isinstance(ev, MessageStart):
            if ev.model and not self.model:
                self.model = ev.model
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
            return self._line(final=final(self.usage, self.stop, time.monotonic_ns() - self.t0))
        if isinstance(ev, StreamError):
            return orjson.dumps({"error": ev.message}) + b"\n"
        return b""


# ---------------------------------------------------------------- upstream side: stream decoder


class OllamaStreamDecoder(StreamDecoder):
    """NDJSON chat lines → canonical events (blocks synthesised; the `done` line carries usage)."""

    __slots__ = ("_done", "_index", "_lines", "_open", "_started", "_tool")

    def __init__(self) -> None:
        self._lines = LineSplitter()
        self._started = False
        self._open: str | None = None
        self._index = -1
        self._done = False
        self._tool = False

    def feed(self, chunk: bytes) -> list[Event]:
        out: list[Event] = []
        for line in self._lines.feed(chunk):
            if not self._done:
                self._line(line, out)
        return out

    def close(self) -> list[Event]:
        out: list[Event] = []
        for line in self._lines.flush():
            if not self._done:
                self._line(line, out)
        if not self._done:
            self._done = True
            out.append(StreamError(kind=ErrorKind.UPSTREAM, message="Ollama stream ended before done:true"))
        return out

    def _block(self, kind: str | None, out: list[Event]) -> None:
        if self._open == kind:
            return
        if self._open is not None:
            out.append(BlockStop(index=self._index))
        self._open = kind
        if kind is not None:
            self._index += 1
            out.append(BlockStart(index=self._index, block=Text(text="") if kind == "text" else Reasoning()))

    def _line(self, line: bytes, out: list[Event]) -> None:
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError:
            obj = None
        if not isinstance(obj, dict):
            self._done = True
            out.append(StreamError(kind=ErrorKind.UPSTREAM, message="Ollama sent a malformed stream line"))
            return
        if "error" in obj:
            self._done = True
            out.append(StreamError(kind=ErrorKind.UPSTREAM, message=str(obj["error"])))
            return
        if not self._started:
            self._started = True
            out.append(
                MessageStart(id=new_id("msg_"), model=str(obj.get("model") or ""), created=int(time.time()))
            )
        msg = obj.get("message")
        if isinstance(msg, dict):
            thinking, content = msg.get("thinking"), msg.get("content")
            if isinstance(thinking, str) and thinking:
                self._block("reasoning", out)
                out.append(ReasoningDelta(index=self._index, text=thinking))
            if isinstance(content, str) and content:
                self._block("text", out)
                out.append(TextDelta(index=self._index, text=content))
            for call in calls_in(msg.get("tool_calls")):
                self._block(None, out)
                self._index += 1
                self._tool = True
                args, call.arguments = call.arguments, ""
                out.append(BlockStart(index=self._index, block=call))
                out.append(ToolArgsDelta(index=self._index, json=args))
                out.append(BlockStop(index=self._index))
        if obj.get("done") is True:
            self._block(None, out)
            out.append(
                MessageDelta(stop_reason=stop_in(obj.get("done_reason"), self._tool), usage=usage_in(obj))
            )
            out.append(MessageStop())
            self._done = True


def calls_in(value: Any) -> list[ToolCall]:
    out = []
    for tc in value if isinstance(value, list) else ():
        fn = tc.get("function") if isinstance(tc, dict) else None
        if isinstance(fn, dict):
            args = fn.get("arguments")
            text = args if isinstance(args, str) else orjson.dumps(args if args is not None else {}).decode()
            cid = tc.get("id")  # current Ollama names each call; the client answers with it as tool_call_id
            out.append(
                ToolCall(
                    id=cid if isinstance(cid, str) and cid else new_id("call_"),
                    name=str(fn.get("name") or ""),
                    arguments=text,
                )
            )
    return out


def stop_in(reason: Any, tool: bool) -> StopReason:
    if reason == "length":
        return StopReason.MAX_TOKENS
    return StopReason.TOOL_USE if tool else StopReason.END_TURN


def usage_in(obj: dict[str, Any]) -> Usage:
    p, e = obj.get("prompt_eval_count"), obj.get("eval_count")
    return Usage(input_tokens=p if isinstance(p, int) else 0, output_tokens=e if isinstance(e, int) else 0)
