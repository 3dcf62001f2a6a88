"""Forced tool calls toward upstreams whose protocol cannot force one (Ollama has no `tool_choice`).

Clients that force a call rely on getting one: structured-output libraries put the answer's schema in a tool
and force it (pydantic-ai's output tools, instructor's TOOLS modes, LangChain's function calling, the AI SDK's
`json` tool, Anthropic's `tool_choice: any`). An upstream that ignores the choice answers in prose and the
client fails. Toward such an upstream the gateway constrains the model's output instead: the request carries
a JSON-schema response format describing the call — `{"name": <one of the tools>, "arguments": <its
parameters>}` (an `anyOf` over the allowed tools for "required") — which Ollama enforces while decoding, with
the tools named and described in an added system line. The JSON the model writes comes back to the client as
that tool call, non-streamed and streamed (the text is held until it parses; a reply that does not parse as a
call passes through unchanged). A native tool call from the upstream also passes through unchanged.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import msgspec
import orjson

from .canonical import (
    BlockStart,
    BlockStop,
    Event,
    MessageDelta,
    Request,
    Response,
    ResponseFormat,
    StopReason,
    StreamError,
    Text,
    TextDelta,
    Tool,
    ToolArgsDelta,
    ToolCall,
)
from .protocols.common import new_id


def applies(req: Request, supports_tool_choice: bool) -> bool:
    """The client forces a call that this upstream could not be told to make. (A response format the client
    also set applies to text answers, which a forced call rules out: the call's schema replaces it.)"""
    tc = req.tool_choice
    return (
        not supports_tool_choice
        and tc is not None
        and tc.mode in ("required", "tool")
        and bool(_allowed(req))
    )


def _allowed(req: Request) -> list[Tool]:
    tc = req.tool_choice
    if tc is not None and tc.mode == "tool":
        return [t for t in req.tools if t.name == tc.name]
    return list(req.tools)


def call_schema(tools: list[Tool]) -> dict[str, Any]:
    options = [
        {
            "type": "object",
            "properties": {
                "name": {"type": "string", "enum": [t.name]},
                "arguments": t.parameters or {"type": "object"},
            },
            "required": ["name", "arguments"],
        }
        for t in tools
    ]
    return options[0] if len(options) == 1 else {"anyOf": options}


def constrain(req: Request) -> Request:
    """The request with the forced call turned into a constrained JSON answer."""
    tools = _allowed(req)
    listed = "; ".join(f"{t.name}: {t.description}" if t.description else t.name for t in tools)
    guide = Text(
        text="Call exactly one tool now. Answer only with a JSON object "
        f'{{"name": <tool name>, "arguments": <its arguments>}}. Tools: {listed}'
    )
    return msgspec.structs.replace(
        req,
        tools=[],
        tool_choice=None,
        system=[*req.system, guide],
        response_format=ResponseFormat(type="json_schema", schema=call_schema(tools), name="tool_call"),
    )


def parse_call(text: str, req: Request) -> ToolCall | None:
    """The forced call a constrained answer spells, or None when it is not one."""
    try:
        obj = orjson.loads(text.strip() or "null")
    except orjson.JSONDecodeError:
        return None
    names = {t.name for t in _allowed(req)}
    if (
        not isinstance(obj, dict)
        or obj.get("name") not in names
        or not isinstance(obj.get("arguments"), dict)
    ):
        return None
    return ToolCall(id=new_id("call_"), name=obj["name"], arguments=orjson.dumps(obj["arguments"]).decode())


def apply_to_response(resp: Response, req: Request) -> Response:
    if any(isinstance(b, ToolCall) for b in resp.content):
        return resp
    call = parse_call("".join(b.text for b in resp.content if isinstance(b, Text)), req)
    if call is None:
        return resp
    content = [b for b in resp.content if not isinstance(b, Text)] + [call]
    stop = resp.stop_reason if resp.stop_reason == StopReason.MAX_TOKENS else StopReason.TOOL_USE
    return msgspec.structs.replace(resp, content=content, stop_reason=stop)


async def apply_to_stream(events: AsyncIterator[Event], req: Request) -> AsyncIterator[Event]:
    """Hold the answer's text blocks (and what follows them) until the message ends, then send them as the
    call they spell — or unchanged."""
    held: list[Event] = []
    text: list[str] = []
    first: int | None = None  # index of the first held text block
    async for ev in events:
        if first is None and isinstance(ev, BlockStart) and isinstance(ev.block, Text):
            first = ev.index
        if first is None:
            yield ev
            continue
        if isinstance(ev, MessageDelta | StreamError) or (
            isinstance(ev, BlockStart) and isinstance(ev.block, ToolCall)
        ):
            call = None if isinstance(ev, StreamError | BlockStart) else parse_call("".join(text), req)
            if call is None:
                for h in held:
                    yield h
            else:
                yield BlockStart(index=first, block=msgspec.structs.replace(call, arguments=""))
                yield ToolArgsDelta(index=first, json=call.arguments)
                yield BlockStop(index=first)
                if isinstance(ev, MessageDelta) and ev.stop_reason != StopReason.MAX_TOKENS:
                    ev = msgspec.structs.replace(ev, stop_reason=StopReason.TOOL_USE)
            held, text, first = [], [], None
            yield ev
            continue
        held.append(ev)
        if isinstance(ev, TextDelta):
            text.append(ev.text)
    for h in held:  # the stream ended without a message delta
        yield h
