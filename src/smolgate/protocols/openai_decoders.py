"""Upstream stream decoders for OpenAI Chat Completions and OpenAI Responses (feed/close state machines).

Both synthesise canonical block start/stop from wire deltas, keep block indices sequential, hold the final
`MessageDelta` until usage is known (Chat sends `finish_reason` before its usage chunk and ends with
`[DONE]`; Responses ends with `response.completed|incomplete|failed`), and report in-stream errors and
truncated streams as `StreamError`.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
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
from . import openai_responses_wire as w
from .base import StreamDecoder
from .common import new_id, now
from .sse import SSEParser
from .wire import Invalid


class _Open(enum.Enum):
    NONE = 0
    TEXT = 1
    REASONING = 2
    TOOL = 3


class _Base(StreamDecoder):
    """Block bookkeeping shared by both decoders: one open block at a time, sequential indices."""

    def __init__(self) -> None:
        self._sse = SSEParser()
        self._started = False
        self._finished = False
        self._open = _Open.NONE
        self._key: Any = None  # wire identity of the open block (tool index, item id, …)
        self._index = -1
        self._args_sent = False
        self._has_tools = False
        self._usage: Usage | None = None
        self._seen: set[Any] = set()  # wire ids of blocks already opened

    def feed(self, chunk: bytes) -> list[Event]:
        out: list[Event] = []
        if not self._finished:
            for msg in self._sse.feed(chunk):
                self._data(msg.data, out)
                if self._finished:
                    break
        return out

    def close(self) -> list[Event]:
        out: list[Event] = []
        if self._finished:
            return out
        for msg in self._sse.flush():
            self._data(msg.data, out)
            if self._finished:
                return out
        self._eof(out)
        if not self._finished:
            self._fail(out, ErrorKind.UPSTREAM, "upstream stream ended before it was complete")
        return out

    def _data(self, data: str, out: list[Event]) -> None:
        if data.startswith("[DONE]"):
            self._done(out)
            return
        try:
            obj = orjson.loads(data)
        except orjson.JSONDecodeError:
            self._fail(out, ErrorKind.UPSTREAM, "upstream sent invalid JSON in its stream")
            return
        if isinstance(obj, dict):
            self._event(obj, out)

    # subclasses
    def _event(self, obj: dict[str, Any], out: list[Event]) -> None: ...

    def _done(self, out: list[Event]) -> None: ...

    def _eof(self, out: list[Event]) -> None: ...

    # helpers
    def _start(self, out: list[Event], rid: Any = None, model: Any = None, created: Any = None) -> None:
        if not self._started:
            self._started = True
            out.append(
                MessageStart(
                    id=rid if isinstance(rid, str) and rid else new_id("chatcmpl-"),
                    model=model if isinstance(model, str) else "",
                    created=created if isinstance(created, int) else now(),
                )
            )

    def _begin(self, out: list[Event], kind: _Open, key: Any, block: Text | Reasoning | ToolCall) -> None:
        self._end(out)
        self._index += 1
        self._open, self._key, self._args_sent = kind, key, False
        wire_id = key[0] if isinstance(key, tuple) else key
        if isinstance(wire_id, (str, int)):
            self._seen.add(wire_id)
        if kind is _Open.TOOL:
            self._has_tools = True
        out.append(BlockStart(index=self._index, block=block))

    def _end(self, out: list[Event]) -> None:
        if self._open is _Open.NONE:
            return
        if self._open is _Open.TOOL and not self._args_sent:
            out.append(ToolArgsDelta(index=self._index, json="{}"))  # a call with no argument fragments
        out.append(BlockStop(index=self._index))
        self._open, self._key = _Open.NONE, None

    def _args(self, out: list[Event], fragment: Any) -> None:
        if not isinstance(fragment, str):
            fragment = orjson.dumps(fragment).decode() if isinstance(fragment, (dict, list)) else ""
        if fragment:
            self._args_sent = True
            out.append(ToolArgsDelta(index=self._index, json=fragment))

    def _text(self, out: list[Event], key: Any, text: str) -> None:
        if self._open is not _Open.TEXT or self._key != key:
            self._begin(out, _Open.TEXT, key, Text(text=""))
        out.append(TextDelta(index=self._index, text=text))

    def _reasoning(self, out: list[Event], key: Any, text: str) -> None:
        if self._open is not _Open.REASONING or self._key != key:
            self._begin(out, _Open.REASONING, key, Reasoning(text=""))
        out.append(ReasoningDelta(index=self._index, text=text))

    def _fail(self, out: list[Event], kind: ErrorKind, message: str) -> None:
        self._finished = True
        out.append(StreamError(kind=kind, message=message))

    def _complete(self, out: list[Event], stop: StopReason) -> None:
        self._start(out)
        self._end(out)
        out.append(MessageDelta(stop_reason=stop, usage=self._usage or Usage()))
        out.append(MessageStop())
        self._finished = True


class ChatStreamDecoder(_Base):
    """`chat.completion.chunk` SSE → canonical events."""

    def __init__(self) -> None:
        super().__init__()
        self._finish: Any = None

    def _event(self, obj: dict[str, Any], out: list[Event]) -> None:
        err = obj.get("error")
        if err:
            self._fail(out, oc.kind_from_error(err), oc.error_message(err))
            return
        self._start(out, obj.get("id"), obj.get("model"), obj.get("created"))
        usage = obj.get("usage")
        if isinstance(usage, dict):
            self._usage = oc.usage_from_chat(usage)
        choices = obj.get("choices")
        if not isinstance(choices, list):
            return
        for ch in choices:
            if not isinstance(ch, dict) or ch.get("index", 0) != 0:
                continue  # n > 1 is never requested; ignore stray choices
            delta = ch.get("delta")
            if isinstance(delta, dict):
                self._delta(delta, out)
            if ch.get("finish_reason"):
                self._finish = ch["finish_reason"]
                self._end(out)

    def _delta(self, delta: dict[str, Any], out: list[Event]) -> None:
        r = delta.get("reasoning_content") or delta.get("reasoning")
        if isinstance(r, str) and r:
            self._reasoning(out, None, r)
        c = delta.get("content")
        if isinstance(c, str) and c:
            self._text(out, None, c)
        r = delta.get("refusal")
        if isinstance(r, str) and r:
            self._text(out, None, r)
        tcs = delta.get("tool_calls")
        if not isinstance(tcs, list):
            return
        for tc in tcs:
            if not isinstance(tc, dict):
                continue
            key = tc.get("index")
            if not isinstance(key, int):  # servers that omit index: a new id starts a new call
                tid = tc.get("id")
                key = tid if isinstance(tid, str) and tid else (self._key if self._open is _Open.TOOL else 0)
            fn = tc.get("function")
            fn = fn if isinstance(fn, dict) else {}
            if self._open is not _Open.TOOL or self._key != key:
                tid, name = tc.get("id"), fn.get("name")
                self._begin(
                    out,
                    _Open.TOOL,
                    key,
                    ToolCall(
                        id=tid if isinstance(tid, str) and tid else new_id("call_"),
                        name=name if isinstance(name, str) else "",
                        arguments="",
                    ),
                )
            self._args(out, fn.get("arguments"))

    def _done(self, out: list[Event]) -> None:
        if not self._started:
            self._fail(out, ErrorKind.UPSTREAM, "upstream stream ended without any chunk")
            return
        self._complete(out, oc.stop_from_finish(self._finish, self._has_tools))

    def _eof(self, out: list[Event]) -> None:
        if self._started and self._finish is not None:  # finish_reason seen but no [DONE]: the SDK accepts it
            self._complete(out, oc.stop_from_finish(self._finish, self._has_tools))


_INCOMPLETE = {"max_output_tokens": StopReason.MAX_TOKENS, "content_filter": StopReason.CONTENT_FILTER}


def responses_stop(resp: dict[str, Any], has_tools: bool) -> StopReason:
    details = resp.get("incomplete_details")
    reason = details.get("reason") if isinstance(details, dict) else None
    status = resp.get("status")
    return stop_of(
        status if isinstance(status, str) else None, reason if isinstance(reason, str) else None, has_tools
    )


def stop_of(status: str | None, reason: str | None, has_tools: bool) -> StopReason:
    """A response's status (and incomplete reason) → the canonical stop reason."""
    if status == "incomplete":
        return _INCOMPLETE.get(reason, StopReason.MAX_TOKENS) if reason is not None else StopReason.MAX_TOKENS
    return StopReason.TOOL_USE if has_tools else StopReason.END_TURN


def _call_name(item: dict[str, Any]) -> str:
    name, ns = item.get("name"), item.get("namespace")
    name = name if isinstance(name, str) else ""
    return tk.flat_name(ns if isinstance(ns, str) and ns else None, name)


def output_item_blocks(item: Any) -> list[Block]:
    """One Responses output item → canonical blocks (a namespaced call gets its flat name, a custom tool
    call its `{"input": …}` arguments; hosted-tool items stay `Opaque`)."""
    if not isinstance(item, dict):
        return []
    typ = item.get("type")
    if typ == "message":
        out: list[Block] = []
        for part in item.get("content") or ():
            text = part.get("text") if part.get("type") == "output_text" else part.get("refusal")
            if isinstance(text, str) and text:
                out.append(Text(text=text))
        return out
    if typ in ("function_call", "custom_tool_call"):
        cid = item.get("call_id") or item.get("id")
        if typ == "custom_tool_call":
            raw = item.get("input")
            args = tk.custom_args(raw if isinstance(raw, str) else "")
        else:
            raw = item.get("arguments")
            args = raw if isinstance(raw, str) and raw else "{}"
        return [ToolCall(id=str(cid) if cid else new_id("call_"), name=_call_name(item), arguments=args)]
    if typ == "reasoning":
        parts = item.get("summary") or item.get("content") or []
        enc = item.get("encrypted_content")
        return [
            Reasoning(
                text="\n\n".join(str(p.get("text", "")) for p in parts),
                redacted=enc if isinstance(enc, str) and enc else None,
            )
        ]
    if isinstance(typ, str):
        return [Opaque(protocol="openai-responses", data=item)]
    return []


class ResponsesStreamDecoder(_Base):
    """Responses API SSE events → canonical events. A custom tool call's raw input deltas become fragments of
    `{"input": "…"}` (JSON-escaped as they come), so every client sees a function call's arguments."""

    def __init__(self) -> None:
        super().__init__()
        self._summary_index: Any = None
        self._custom = False  # the open tool block is a custom tool call whose `{"input": "` is open
        self._custom_input = False  # … and some of its input was relayed
        self._reasoning_enc = False  # the open reasoning block already carries encrypted_content
        self._pending_reasoning: tuple[Any, str | None] | None = None  # announced, no block yet: (id, enc)

    def _data(self, data: str, out: list[Event]) -> None:
        if data.startswith("[DONE]"):  # a Chat habit some servers keep: nothing to do
            return
        ev = w.EVENTS.decode(data)
        handler = _HANDLERS.get(type(ev))
        if handler is not None:  # None: an event we do not act on, or JSON that is not an object
            handler(self, ev, out)

    def _invalid(self, ev: Invalid, out: list[Event]) -> None:
        if not ev.json:
            self._fail(out, ErrorKind.UPSTREAM, "upstream sent invalid JSON in its stream")

    def _on_text(self, ev: w.TextDelta, out: list[Event]) -> None:
        self._start(out)
        if ev.delta:
            self._text(out, (ev.item_id, ev.content_index), ev.delta)

    def _on_args(self, ev: w.ArgsDelta, out: list[Event]) -> None:
        self._start(out)
        if self._open is not _Open.TOOL or self._key != ev.item_id:
            call = ToolCall(id=ev.item_id or new_id("call_"), name="", arguments="")
            self._begin(out, _Open.TOOL, ev.item_id, call)
        self._args(out, ev.delta)

    def _on_reasoning(self, ev: w.SummaryDelta, out: list[Event]) -> None:
        self._start(out)
        if not ev.delta:
            return
        item_id, si = ev.item_id, ev.summary_index
        if (
            self._open is _Open.REASONING
            and self._key == item_id
            and self._summary_index is not None
            and si != self._summary_index
        ):
            out.append(ReasoningDelta(index=self._index, text="\n\n"))  # next summary part
        self._summary_index = si
        pending = self._pending_reasoning
        if pending is not None and pending[0] == item_id:  # the item announced earlier starts now
            self._pending_reasoning = None
            self._reasoning_enc = pending[1] is not None
            self._begin(out, _Open.REASONING, item_id, Reasoning(text="", redacted=pending[1]))
        self._reasoning(out, item_id, ev.delta)

    def _on_created(self, ev: w.Created, out: list[Event]) -> None:
        r = ev.response
        self._start(out, r.id, r.model, r.created_at)

    def _on_item_added(self, ev: w.ItemAdded, out: list[Event]) -> None:
        self._start(out)
        self._item_added(ev.item, out)

    def _on_part_added(self, ev: w.PartAdded, out: list[Event]) -> None:
        if ev.part is not None and ev.part.type in ("output_text", "refusal"):
            key = (ev.item_id, ev.content_index)
            if self._open is not _Open.TEXT or self._key != key:
                self._begin(out, _Open.TEXT, key, Text(text=""))

    def _on_custom_input(self, ev: w.CustomInputDelta, out: list[Event]) -> None:
        if self._custom and self._key == ev.item_id and ev.delta:
            self._custom_input = True
            self._args(out, orjson.dumps(ev.delta).decode()[1:-1])

    def _on_args_done(self, ev: w.ArgsDone, out: list[Event]) -> None:
        if self._open is _Open.TOOL and self._key == ev.item_id and not self._args_sent:
            self._args(out, ev.arguments)

    def _on_item_done(self, ev: w.ItemDone, out: list[Event]) -> None:
        self._item_done(ev.item, out)

    def _on_completed(self, ev: w.Completed, out: list[Event]) -> None:
        r = ev.response
        if r.usage is not None:
            self._usage = oc.usage_from_responses(r.usage)
        self._start(out, r.id, r.model, r.created_at)
        reason = r.incomplete_details.reason if r.incomplete_details is not None else None
        self._complete(out, stop_of(r.status, reason, self._has_tools))

    def _on_failed(self, ev: w.Failed, out: list[Event]) -> None:
        self._fail_with(out, ev.response.error or w.ErrorBody(), "upstream response failed")

    def _on_error(self, ev: w.Error, out: list[Event]) -> None:
        self._fail_with(out, ev.body, "upstream error")

    def _fail_with(self, out: list[Event], e: w.ErrorBody, default: str) -> None:
        code = e.code if isinstance(e.code, str) else None
        self._fail(out, oc.kind_from_codes(code, e.type), e.message or default)

    def _item_added(self, item: Any, out: list[Event]) -> None:
        if not isinstance(item, dict):
            return
        typ, item_id = item.get("type"), item.get("id")
        if typ in ("function_call", "custom_tool_call"):
            call_id = item.get("call_id")
            self._begin(
                out,
                _Open.TOOL,
                item_id,
                ToolCall(
                    id=call_id if isinstance(call_id, str) and call_id else new_id("call_"),
                    name=_call_name(item),
                    arguments="",
                ),
            )
            if typ == "custom_tool_call":
                self._custom = True
                self._args(out, '{"input":"')
                raw = item.get("input")
                self._custom_input = isinstance(raw, str) and bool(raw)
                if self._custom_input:
                    self._args(out, orjson.dumps(raw).decode()[1:-1])
            else:
                self._args(out, item.get("arguments"))
        elif typ == "reasoning":  # its block starts with its first summary delta, or when it is done
            self._end(out)
            enc = item.get("encrypted_content")
            self._summary_index = None
            self._pending_reasoning = (item_id, enc if isinstance(enc, str) and enc else None)
        else:
            self._end(out)

    def _item_done(self, item: Any, out: list[Event]) -> None:
        if not isinstance(item, dict):
            return
        item_id, typ = item.get("id"), item.get("type")
        key = self._key[0] if self._open is _Open.TEXT else self._key
        if self._open is not _Open.NONE and key == item_id:
            if self._custom:
                if not self._custom_input:  # no input deltas: the done item has the whole input
                    raw = item.get("input")
                    if isinstance(raw, str) and raw:
                        self._args(out, orjson.dumps(raw).decode()[1:-1])
                self._args(out, '"}')
                self._custom = False
            self._end(out)
            enc = item.get("encrypted_content")
            if typ == "reasoning" and isinstance(enc, str) and enc and not self._reasoning_enc:
                # encrypted_content came only with the finished item: carry it as its own opaque block
                self._begin(out, _Open.REASONING, (item_id, "enc"), Reasoning(text="", redacted=enc))
                self._end(out)
        elif (
            typ == "reasoning"
            and self._pending_reasoning is not None
            and self._pending_reasoning[0] == item_id
        ):
            self._pending_reasoning = None  # no deltas streamed: the finished item is the whole block
            for block in output_item_blocks(item):
                if isinstance(block, Reasoning) and (block.text or block.redacted):
                    self._begin(out, _Open.REASONING, item_id, Reasoning(text="", redacted=block.redacted))
                    if block.text:
                        out.append(ReasoningDelta(index=self._index, text=block.text))
                    self._end(out)
        elif (
            typ in ("function_call", "custom_tool_call")
            and isinstance(item_id, str)
            and item_id not in self._seen
        ):  # a call that was never announced
            self._item_added(item, out)
            self._item_done(item, out)

    def _eof(self, out: list[Event]) -> None:
        pass  # without a terminal response.* event the stream is truncated


_Handler = Callable[[ResponsesStreamDecoder, Any, list[Event]], None]
_HANDLERS: dict[type, _Handler] = {
    Invalid: ResponsesStreamDecoder._invalid,
    w.Created: ResponsesStreamDecoder._on_created,
    w.InProgress: ResponsesStreamDecoder._on_created,
    w.Queued: ResponsesStreamDecoder._on_created,
    w.ItemAdded: ResponsesStreamDecoder._on_item_added,
    w.PartAdded: ResponsesStreamDecoder._on_part_added,
    w.TextDelta: ResponsesStreamDecoder._on_text,
    w.RefusalDelta: ResponsesStreamDecoder._on_text,
    w.ArgsDelta: ResponsesStreamDecoder._on_args,
    w.ArgsDone: ResponsesStreamDecoder._on_args_done,
    w.CustomInputDelta: ResponsesStreamDecoder._on_custom_input,
    w.SummaryDelta: ResponsesStreamDecoder._on_reasoning,
    w.ReasoningTextDelta: ResponsesStreamDecoder._on_reasoning,
    w.ItemDone: ResponsesStreamDecoder._on_item_done,
    w.Completed: ResponsesStreamDecoder._on_completed,
    w.Incomplete: ResponsesStreamDecoder._on_completed,
    w.Failed: ResponsesStreamDecoder._on_failed,
    w.Error: ResponsesStreamDecoder._on_error,
}
