"""Shared pieces of the Anthropic codec tests: the codec, request contexts and small builders."""

from __future__ import annotations

import base64

import orjson
import pytest

from smolgate.canonical import (
    BlockStart,
    BlockStop,
    MessageDelta,
    MessageStart,
    MessageStop,
    Reasoning,
    ReasoningDelta,
    Request,
    SignatureDelta,
    StopReason,
    Text,
    TextDelta,
    ToolArgsDelta,
    ToolCall,
    Usage,
)
from smolgate.errors import ErrorKind, GatewayError
from smolgate.protocols.anthropic import (
    AnthropicCodec,
)
from smolgate.protocols.base import RequestContext
from smolgate.protocols.sse import SSEParser

codec = AnthropicCodec()
CTX_OLD = RequestContext(headers={"x-api-key": "k", "anthropic-version": "2023-06-01"})
CTX_NEW = RequestContext(headers={"authorization": "Bearer k", "anthropic-version": "2026-10-21"})
CTX_NONE = RequestContext()
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 16
PNG_B64 = base64.b64encode(PNG).decode()


def dec(obj, ctx=CTX_OLD) -> Request:
    return codec.decode_request(orjson.dumps(obj), ctx)


def base(**kw):
    body = {"model": "claude-x", "max_tokens": 100, "messages": [{"role": "user", "content": "hi"}]}
    body.update(kw)
    return body


def bad(obj, param, ctx=CTX_OLD) -> GatewayError:
    with pytest.raises(GatewayError) as e:
        dec(obj, ctx)
    assert e.value.status == 400 and e.value.kind is ErrorKind.INVALID_REQUEST
    assert e.value.param == param, (e.value.param, e.value.message)
    return e.value


def frames(data: bytes) -> list[tuple[str | None, dict]]:
    p = SSEParser()
    return [(m.event, orjson.loads(m.data)) for m in p.feed(data) + p.flush()]


FULL_EVENTS = [
    MessageStart(id="abc", model="up", usage=Usage(input_tokens=25, cached_tokens=5)),
    BlockStart(index=0, block=Reasoning()),
    ReasoningDelta(index=0, text="Let me think"),
    SignatureDelta(index=0, signature="sig123"),
    BlockStop(index=0),
    BlockStart(index=1, block=Text(text="")),
    TextDelta(index=1, text="Hel"),
    TextDelta(index=1, text="lo"),
    BlockStop(index=1),
    BlockStart(index=2, block=ToolCall(id="toolu_01", name="get_weather", arguments="")),
    ToolArgsDelta(index=2, json='{"city": "Par'),
    ToolArgsDelta(index=2, json='is"}'),
    BlockStop(index=2),
    MessageDelta(
        stop_reason=StopReason.TOOL_USE, usage=Usage(input_tokens=25, cached_tokens=5, output_tokens=30)
    ),
    MessageStop(),
]


def encode_stream(events, req=None) -> bytes:
    enc = codec.stream_encoder(req or dec(base(stream=True)))
    return b"".join(enc.feed(e) for e in events) + enc.close()


def decode_stream(data: bytes, step: int | None = None) -> list:
    d = codec.stream_decoder()
    out: list = []
    if step is None:
        out += d.feed(data)
    else:
        for i in range(0, len(data), step):
            out += d.feed(data[i : i + step])
    return out + d.close()
