"""Anthropic Messages codec: both sides, streaming, errors, §8 gotchas, fuzz, real SDK, fake upstream."""

from __future__ import annotations

import base64
import time

import anthropic
import httpx
import httpx2
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from smolgate.canonical import (
    BlockStart,
    BlockStop,
    Image,
    Message,
    MessageDelta,
    MessageStart,
    MessageStop,
    Reasoning,
    ReasoningConfig,
    ReasoningDelta,
    Request,
    Response,
    ResponseFormat,
    SignatureDelta,
    StopReason,
    StreamError,
    Text,
    TextDelta,
    Tool,
    ToolArgsDelta,
    ToolCall,
    ToolChoice,
    ToolResult,
    Usage,
    Video,
)
from smolgate.errors import ErrorKind, GatewayError
from smolgate.protocols.anthropic import (
    AnthropicCodec,
    decode_count_tokens_request,
    encode_count_tokens,
    encode_model,
    encode_models,
)
from smolgate.protocols.base import ModelInfo, RequestContext
from smolgate.protocols.sse import SSEParser
from tests.fakes.anthropic_upstream import AnthropicUpstream

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


# ======================================================== client side: decode_request


@pytest.mark.parametrize("ctx", [CTX_OLD, CTX_NEW, CTX_NONE])
def test_decode_accepts_both_generations_and_sampling(ctx):
    r = dec(
        base(
            temperature=0.5,
            top_p=0.9,
            top_k=40,
            stop_sequences=["END"],
            metadata={"user_id": "u1"},
            stream=True,
        ),
        ctx,
    )
    assert (r.model, r.max_tokens, r.temperature, r.top_p, r.top_k) == ("claude-x", 100, 0.5, 0.9, 40)
    assert r.stop == ["END"] and r.metadata == {"user_id": "u1"} and r.stream
    assert r.messages == [Message(role="user", content=[Text(text="hi")])]


def test_missing_max_tokens_names_field():
    obj = base()
    del obj["max_tokens"]
    err = bad(obj, "max_tokens")
    assert "max_tokens" in err.message
    bad(base(max_tokens=0), "max_tokens")
    bad(base(max_tokens="5"), "max_tokens")


def test_count_tokens_request_needs_no_max_tokens():
    obj = base()
    del obj["max_tokens"]
    r = decode_count_tokens_request(orjson.dumps(obj), CTX_NEW)
    assert r.max_tokens is None and r.messages[0].content == [Text(text="hi")]
    assert orjson.loads(encode_count_tokens(42)) == {"input_tokens": 42}


def test_system_string_blocks_and_hoisted_system_messages():
    r = dec(base(system="be brief"))
    assert r.system == [Text(text="be brief")]
    r = dec(
        base(
            system=[
                {"type": "text", "text": "a", "cache_control": {"type": "ephemeral"}},
                {"type": "text", "text": "b"},
            ]
        )
    )
    assert r.system_text == "a\n\nb"
    r = dec(
        base(
            system="top",
            messages=[
                {"role": "system", "content": "mid"},
                {"role": "user", "content": "hi"},
                {"role": "assistant", "content": "yo"},
                {"role": "system", "content": [{"type": "text", "text": "late"}]},
                {"role": "user", "content": "again"},
            ],
        )
    )
    assert [t.text for t in r.system] == ["top", "mid", "late"]
    assert [m.role for m in r.messages] == ["user", "assistant", "user"]
    bad(base(system=[{"type": "image"}]), "system[0].type")
    bad(base(system=5), "system")


def test_consecutive_roles_merge_and_first_must_be_user():
    r = dec(
        base(
            messages=[
                {"role": "user", "content": "a"},
                {"role": "user", "content": [{"type": "text", "text": "b"}]},
                {"role": "assistant", "content": "c"},
                {"role": "assistant", "content": "d"},
            ]
        )
    )
    assert [(m.role, [b.text for b in m.content]) for m in r.messages] == [
        ("user", ["a", "b"]),
        ("assistant", ["c", "d"]),
    ]
    bad(base(messages=[{"role": "assistant", "content": "x"}]), "messages[0].role")
    bad(
        base(messages=[{"role": "system", "content": "x"}, {"role": "assistant", "content": "x"}]),
        "messages[1].role",
    )
    bad(base(messages=[]), "messages")
    bad(base(messages=[{"role": "tool", "content": "x"}]), "messages[0].role")


def test_images_base64_url_and_data_url():
    r = dec(
        base(
            messages=[
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "look"},
                        {
                            "type": "image",
                            "source": {"type": "base64", "media_type": "image/png", "data": PNG_B64},
                        },
                        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
                        {
                            "type": "image",
                            "source": {"type": "url", "url": "data:image/gif;base64," + PNG_B64},
                        },
                        {"type": "image", "source": {"type": "base64", "data": PNG_B64}},
                    ],
                }
            ]
        )
    )
    c = r.messages[0].content
    assert c[1] == Image(data=PNG, media_type="image/png")
    assert c[2] == Image(url="https://example.com/cat.jpg")
    assert c[3] == Image(data=PNG, media_type="image/gif")
    assert c[4].media_type == "image/png"  # sniffed when media_type is missing
    bad(
        base(
            messages=[
                {"role": "user", "content": [{"type": "image", "source": {"type": "base64", "data": 5}}]}
            ]
        ),
        "messages[0].content[0].source.data",
    )
    bad(
        base(
            messages=[
                {"role": "user", "content": [{"type": "image", "source": {"type": "file", "file_id": "f"}}]}
            ]
        ),
        "messages[0].content[0].source.type",
    )
    bad(base(messages=[{"role": "user", "content": [{"type": "image"}]}]), "messages[0].content[0].source")


def test_tool_use_tool_result_and_linking():
    r = dec(
        base(
            messages=[
                {"role": "user", "content": "weather?"},
                {
                    "role": "assistant",
                    "content": [
                        {"type": "thinking", "thinking": "hmm", "signature": "SIG"},
                        {"type": "redacted_thinking", "data": "OPAQUE"},
                        {"type": "text", "text": "calling"},
                        {
                            "type": "tool_use",
                            "id": "toolu_1",
                            "name": "get_weather",
                            "input": {"city": "Paris"},
                        },
                        {"type": "tool_use", "id": "toolu_2", "name": "snap", "input": {}},
                    ],
                },
                {
                    "role": "user",
                    "content": [
                        {"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny"},
                        {
                            "type": "tool_result",
                            "tool_use_id": "toolu_2",
                            "is_error": True,
                            "content": [
                                {"type": "text", "text": "partial"},
                                {
                                    "type": "image",
                                    "source": {"type": "base64", "media_type": "image/png", "data": PNG_B64},
                                },
                            ],
                        },
                        {"type": "text", "text": "thanks"},
                    ],
                },
            ]
        )
    )
    a, u = r.messages[1].content, r.messages[2].content
    assert a[0] == Reasoning(text="hmm", signature="SIG") and a[1] == Reasoning(redacted="OPAQUE")
    assert a[3] == ToolCall(id="toolu_1", name="get_weather", arguments='{"city":"Paris"}')
    assert u[0] == ToolResult(call_id="toolu_1", content=[Text(text="sunny")], name="get_weather")
    assert u[1] == ToolResult(
        call_id="toolu_2",
        content=[Text(text="partial"), Image(data=PNG, media_type="image/png")],
        is_error=True,
        name="snap",
    )
    bad(
        base(messages=[{"role": "user", "content": [{"type": "tool_use", "id": "a", "name": "b"}]}]),
        "messages[0].content[0].type",
    )
    bad(
        base(messages=[{"role": "user", "content": [{"type": "tool_result"}]}]),
        "messages[0].content[0].tool_use_id",
    )


def test_tools_tool_choice_thinking_and_output_config():
    tools = [
        {"name": "get_weather", "description": "w", "input_schema": {"type": "object", "properties": {}}},
        {"type": "web_search_20250305", "name": "web_search", "max_uses": 2},
    ]
    r = dec(
        base(
            tools=tools,
            tool_choice={"type": "any", "disable_parallel_tool_use": True},
            thinking={"type": "enabled", "budget_tokens": 2048},
            output_config={"effort": "high", "format": {"type": "json_schema", "schema": {"type": "object"}}},
        )
    )
    assert r.tools == [
        Tool(name="get_weather", description="w", parameters={"type": "object", "properties": {}})
    ]
    assert r.extra["anthropic_server_tools"] == [tools[1]]
    assert r.tool_choice == ToolChoice(mode="required", parallel=False)
    assert r.reasoning == ReasoningConfig(enabled=True, budget_tokens=2048, effort="high")
    assert r.response_format == ResponseFormat(type="json_schema", schema={"type": "object"})
    for tc, want in [
        ({"type": "auto"}, ToolChoice(mode="auto")),
        ({"type": "none"}, ToolChoice(mode="none")),
        ({"type": "tool", "name": "get_weather"}, ToolChoice(mode="tool", name="get_weather")),
    ]:
        assert dec(base(tools=tools[:1], tool_choice=tc)).tool_choice == want
    assert dec(base(thinking={"type": "disabled"})).reasoning == ReasoningConfig(enabled=False)
    assert dec(base(thinking={"type": "adaptive", "display": "omitted"})).reasoning == ReasoningConfig(
        include_thoughts=False
    )
    assert (
        dec(base(output_format={"type": "json_schema", "schema": {}})).response_format.type == "json_schema"
    )
    bad(base(tool_choice={"type": "sometimes"}), "tool_choice.type")
    bad(base(tool_choice={"type": "tool"}), "tool_choice.name")
    bad(base(thinking={"type": "enabled"}), "thinking.budget_tokens")
    bad(base(tools=[{"name": "x"}]), "tools[0].input_schema")
    bad(base(output_config={"format": {"type": "xml"}}), "output_config.format.type")
    bad(base(stop_sequences=["a", 3]), "stop_sequences[1]")
    bad(base(temperature="hot"), "temperature")


def test_decode_rejects_non_object_and_bad_json():
    for body in (b"[]", b"nope", b'"x"'):
        with pytest.raises(GatewayError) as e:
            codec.decode_request(body, CTX_OLD)
        assert e.value.status == 400


def test_beta_header_rides_in_extra():
    r = dec(base(), RequestContext(headers={"anthropic-beta": "interleaved-thinking-2025-05-14"}))
    assert r.extra["anthropic_beta"] == "interleaved-thinking-2025-05-14"
    up = codec.encode_request(r, "claude-up")
    assert up.headers["anthropic-beta"] == "interleaved-thinking-2025-05-14"


# ======================================================== client side: encode_response / errors


def test_encode_response_shape_usage_and_ids():
    resp = Response(
        id="chatcmpl-1",
        model="gpt",
        stop_reason=StopReason.TOOL_USE,
        usage=Usage(
            input_tokens=100, output_tokens=20, cached_tokens=30, cache_creation_tokens=10, reasoning_tokens=5
        ),
        content=[
            Reasoning(text="think"),
            Reasoning(redacted="ENC"),
            Text(text="hi"),
            ToolCall(id="call.abc/1", name="f", arguments='{"a":1}'),
            ToolCall(id="x", name="g", arguments="[1]"),
            ToolCall(id="y", name="h", arguments="{bad"),
        ],
    )
    out = orjson.loads(codec.encode_response(resp, dec(base())))
    assert out["id"] == "msg_chatcmpl-1" and out["type"] == "message" and out["role"] == "assistant"
    assert out["stop_reason"] == "tool_use" and out["stop_sequence"] is None
    assert out["usage"] == {
        "input_tokens": 60,
        "output_tokens": 20,
        "cache_creation_input_tokens": 10,
        "cache_read_input_tokens": 30,
        "output_tokens_details": {"thinking_tokens": 5},
    }
    c = out["content"]
    assert c[0] == {"type": "thinking", "thinking": "think", "signature": ""}
    assert c[1] == {"type": "redacted_thinking", "data": "ENC"}
    assert c[3] == {"type": "tool_use", "id": "call_abc_1", "name": "f", "input": {"a": 1}}
    assert c[4]["input"] == {"value": [1]} and c[5]["input"] == {"raw": "{bad"}
    plain = orjson.loads(codec.encode_response(Response(id="msg_1", model="", content=[]), dec(base())))
    assert plain["model"] == "claude-x" and plain["id"] == "msg_1"
    assert (
        plain["usage"]["cache_read_input_tokens"] == 0 and plain["usage"]["cache_creation_input_tokens"] == 0
    )
    cf = Response(id="m", model="m", content=[], stop_reason=StopReason.CONTENT_FILTER)
    assert orjson.loads(codec.encode_response(cf, dec(base())))["stop_reason"] == "refusal"


@pytest.mark.parametrize(
    "kind,status,typ",
    [
        (ErrorKind.INVALID_REQUEST, 400, "invalid_request_error"),
        (ErrorKind.AUTH, 401, "authentication_error"),
        (ErrorKind.PERMISSION, 403, "permission_error"),
        (ErrorKind.NOT_FOUND, 404, "not_found_error"),
        (ErrorKind.TOO_LARGE, 413, "request_too_large"),
        (ErrorKind.RATE_LIMITED, 429, "rate_limit_error"),
        (ErrorKind.OVERLOADED, 529, "overloaded_error"),
        (ErrorKind.UPSTREAM, 502, "api_error"),
        (ErrorKind.TIMEOUT, 504, "timeout_error"),
        (ErrorKind.INTERNAL, 500, "api_error"),
    ],
)
def test_encode_error_table(kind, status, typ):
    reply = codec.encode_error(
        GatewayError(kind, "boom", retry_after=1.5 if kind is ErrorKind.RATE_LIMITED else None)
    )
    body = orjson.loads(reply.body)
    assert (
        reply.status == status
        and body["type"] == "error"
        and body["error"] == {"type": typ, "message": "boom"}
    )
    assert body["request_id"].startswith("req_") and reply.headers["request-id"] == body["request_id"]
    assert (reply.headers.get("x-should-retry") == "false") == (
        kind
        in (
            ErrorKind.INVALID_REQUEST,
            ErrorKind.AUTH,
            ErrorKind.PERMISSION,
            ErrorKind.NOT_FOUND,
            ErrorKind.TOO_LARGE,
            ErrorKind.INTERNAL,
        )
    )
    if kind is ErrorKind.RATE_LIMITED:
        assert reply.headers["retry-after"] == "2"


def test_encode_error_upstream_auth_is_502_api_error():
    reply = codec.encode_error(GatewayError(ErrorKind.AUTH, "upstream key bad", status=502))
    assert reply.status == 502 and orjson.loads(reply.body)["error"]["type"] == "api_error"


# ======================================================== client side: stream encoder

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


def test_stream_encoder_wire_shape():
    data = encode_stream(FULL_EVENTS)
    fr = frames(data)
    assert all(ev == d["type"] for ev, d in fr), "every frame needs its event: line"
    assert [ev for ev, _ in fr] == [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    start = fr[0][1]["message"]
    assert start["content"] == [] and start["id"] == "msg_abc" and start["model"] == "up"
    assert start["usage"] == {
        "input_tokens": 20,
        "output_tokens": 0,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 5,
    }
    assert fr[1][1]["content_block"] == {"type": "thinking", "thinking": "", "signature": ""}
    assert fr[3][1]["delta"] == {"type": "signature_delta", "signature": "sig123"}
    assert fr[9][1]["content_block"] == {
        "type": "tool_use",
        "id": "toolu_01",
        "name": "get_weather",
        "input": {},
    }
    assert fr[13][1] == {
        "type": "message_delta",
        "delta": {"stop_reason": "tool_use", "stop_sequence": None},
        "usage": {
            "input_tokens": 20,
            "output_tokens": 30,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 5,
        },
    }


def test_stream_encoder_renumbers_and_repairs():
    # canonical indices that skip numbers, no MessageStart, unclosed block, no MessageDelta
    evs = [
        BlockStart(index=3, block=Text(text="a")),
        TextDelta(index=3, text="b"),
        TextDelta(index=9, text="x"),
        BlockStart(index=7, block=ToolCall(id="call:9", name="f", arguments='{"q":1}')),
        MessageStop(),
    ]
    fr = frames(encode_stream(evs))
    assert fr[0][0] == "message_start" and fr[0][1]["message"]["content"] == []
    idx = [d.get("index") for _, d in fr if "index" in d]
    assert idx == [0, 0, 0, 1, 1, 0, 1]  # start0, delta0 (initial text), delta0, start1, json1, stop0, stop1
    assert fr[4][1]["content_block"]["id"] == "call_9"
    assert [e for e, _ in fr][-2:] == ["message_delta", "message_stop"]


def test_stream_encoder_error_event_and_redacted():
    evs = [
        MessageStart(id="msg_1", model="m"),
        BlockStart(index=0, block=Reasoning(redacted="OPAQUE")),
        BlockStop(index=0),
        BlockStart(index=1, block=Text(text="")),
        TextDelta(index=1, text="x"),
        StreamError(kind="overloaded", message="Overloaded"),
    ]
    fr = frames(encode_stream(evs))
    assert fr[1][1]["content_block"] == {"type": "redacted_thinking", "data": "OPAQUE"}
    assert fr[-1] == (
        "error",
        {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
    )


def test_stream_encoder_emits_immediately():
    enc = codec.stream_encoder(dec(base()))
    for ev in FULL_EVENTS:
        out = enc.feed(ev)
        if isinstance(ev, BlockStart) and isinstance(ev.block, Text):
            assert out == b""  # an empty text block opens with its first non-empty delta
        else:
            assert out, f"{ev} produced no bytes"
        if isinstance(ev, TextDelta) and ev.text == "Hel":
            assert [e for e, _ in frames(out)] == ["content_block_start", "content_block_delta"]


def test_stream_encoder_never_sends_empty_text_blocks():
    evs = [
        MessageStart(id="m", model="x"),
        BlockStart(index=0, block=Text(text="")),
        TextDelta(index=0, text=""),
        BlockStop(index=0),
        BlockStart(index=1, block=ToolCall(id="t", name="f", arguments="")),
        BlockStop(index=1),
        MessageDelta(stop_reason=StopReason.TOOL_USE),
        MessageStop(),
    ]
    fr = frames(encode_stream(evs))
    assert [(e, d.get("index")) for e, d in fr] == [
        ("message_start", None),
        ("content_block_start", 0),
        ("content_block_stop", 0),
        ("message_delta", None),
        ("message_stop", None),
    ]
    assert fr[1][1]["content_block"]["type"] == "tool_use"
    out = orjson.loads(
        codec.encode_response(
            Response(id="m", model="x", content=[Text(text=""), Reasoning(), ToolCall(id="t", name="f")]),
            dec(base()),
        )
    )
    assert [b["type"] for b in out["content"]] == ["tool_use"]


# ======================================================== upstream side: stream decoder

WIRE_STREAM = (
    b'event: message_start\ndata: {"type":"message_start","message":{"id":"msg_01","type":"message",'
    b'"role":"assistant","model":"claude","content":[],"stop_reason":null,"stop_sequence":null,'
    b'"usage":{"input_tokens":25,"output_tokens":1,"cache_read_input_tokens":5,"cache_creation_input_tokens":2}}}\n\n'
    b'event: content_block_start\ndata: {"type":"content_block_start","index":0,"content_block":'
    b'{"type":"thinking","thinking":"","signature":""}}\n\n'
    b'event: ping\ndata: {"type":"ping"}\n\n'
    b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":'
    b'{"type":"thinking_delta","thinking":"Let me think \xc3\xa9"}}\n\n'
    b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":'
    b'{"type":"signature_delta","signature":"sig123"}}\n\n'
    b'event: content_block_stop\ndata: {"type":"content_block_stop","index":0}\n\n'
    b'event: content_block_start\r\ndata: {"type":"content_block_start","index":1,"content_block":'
    b'{"type":"text","text":""}}\r\n\r\n'
    b'event: content_block_delta\ndata: {"type":"content_block_delta","index":1,"delta":'
    b'{"type":"text_delta","text":"Hello \xf0\x9f\x98\x80"}}\n\n'
    b'event: content_block_stop\ndata: {"type":"content_block_stop","index":1}\n\n'
    b'event: content_block_start\ndata: {"type":"content_block_start","index":2,"content_block":'
    b'{"type":"tool_use","id":"toolu_01","name":"get_weather","input":{}}}\n\n'
    b'event: content_block_delta\ndata: {"type":"content_block_delta","index":2,"delta":'
    b'{"type":"input_json_delta","partial_json":"{\\"city\\": \\"Par"}}\n\n'
    b'event: content_block_delta\ndata: {"type":"content_block_delta","index":2,"delta":'
    b'{"type":"input_json_delta","partial_json":"is\\"}"}}\n\n'
    b'event: content_block_stop\ndata: {"type":"content_block_stop","index":2}\n\n'
    b'event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":"tool_use",'
    b'"stop_sequence":null},"usage":{"output_tokens":30}}\n\n'
    b'event: message_stop\ndata: {"type":"message_stop"}\n\n'
)

WIRE_EVENTS = [
    MessageStart(
        id="msg_01",
        model="claude",
        usage=Usage(input_tokens=32, output_tokens=1, cached_tokens=5, cache_creation_tokens=2),
    ),
    BlockStart(index=0, block=Reasoning()),
    ReasoningDelta(index=0, text="Let me think é"),
    SignatureDelta(index=0, signature="sig123"),
    BlockStop(index=0),
    BlockStart(index=1, block=Text(text="")),
    TextDelta(index=1, text="Hello 😀"),
    BlockStop(index=1),
    BlockStart(index=2, block=ToolCall(id="toolu_01", name="get_weather", arguments="")),
    ToolArgsDelta(index=2, json='{"city": "Par'),
    ToolArgsDelta(index=2, json='is"}'),
    BlockStop(index=2),
    MessageDelta(
        stop_reason=StopReason.TOOL_USE,
        usage=Usage(input_tokens=32, output_tokens=30, cached_tokens=5, cache_creation_tokens=2),
    ),
    MessageStop(),
]


def decode_stream(data: bytes, step: int | None = None) -> list:
    d = codec.stream_decoder()
    out: list = []
    if step is None:
        out += d.feed(data)
    else:
        for i in range(0, len(data), step):
            out += d.feed(data[i : i + step])
    return out + d.close()


def test_stream_decoder_whole_and_split_at_every_byte():
    assert decode_stream(WIRE_STREAM) == WIRE_EVENTS
    for cut in range(1, len(WIRE_STREAM)):
        d = codec.stream_decoder()
        evs = d.feed(WIRE_STREAM[:cut]) + d.feed(WIRE_STREAM[cut:]) + d.close()
        assert evs == WIRE_EVENTS, cut
    assert decode_stream(WIRE_STREAM, step=1) == WIRE_EVENTS


def test_stream_decoder_holds_message_delta_until_stop():
    cut = WIRE_STREAM.index(b"event: message_stop")
    d = codec.stream_decoder()
    evs = d.feed(WIRE_STREAM[:cut])
    assert not any(isinstance(e, MessageDelta) for e in evs)
    rest = d.feed(WIRE_STREAM[cut:]) + d.close()
    assert isinstance(rest[0], MessageDelta) and isinstance(rest[1], MessageStop)


def test_stream_decoder_error_event_and_truncation():
    err = (
        b'event: message_start\ndata: {"type":"message_start","message":{"id":"m","model":"c","content":[],'
        b'"usage":{"input_tokens":1,"output_tokens":0}}}\n\n'
        b'event: error\ndata: {"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}\n\n'
    )
    evs = decode_stream(err)
    assert evs[-1] == StreamError(kind="overloaded", message="Overloaded") and len(evs) == 2
    cut = WIRE_STREAM.index(b"event: message_delta")
    evs = decode_stream(WIRE_STREAM[:cut])
    assert isinstance(evs[-1], StreamError) and evs[-1].kind == "upstream"
    assert isinstance(decode_stream(b"data: {not json\n\n")[-1], StreamError)


def test_stream_decoder_skips_server_tool_blocks_and_data_only_frames():
    data = (
        b'data: {"type":"message_start","message":{"id":"m","model":"c","content":[],"usage":{}}}\n\n'
        b'event: content_block_start\ndata: {"type":"content_block_start","index":0,"content_block":'
        b'{"type":"server_tool_use","id":"srvtoolu_1","name":"web_search","input":{}}}\n\n'
        b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":'
        b'{"type":"input_json_delta","partial_json":"{}"}}\n\n'
        b'event: content_block_stop\ndata: {"type":"content_block_stop","index":0}\n\n'
        b'event: content_block_start\ndata: {"type":"content_block_start","index":1,"content_block":'
        b'{"type":"text","text":"ok"}}\n\n'
        b'event: message_stop\ndata: {"type":"message_stop"}\n\n'
    )
    evs = decode_stream(data)
    assert evs[1:] == [
        BlockStart(index=0, block=Text(text="")),
        TextDelta(index=0, text="ok"),
        BlockStop(index=0),
        MessageDelta(stop_reason=StopReason.END_TURN, usage=Usage()),
        MessageStop(),
    ]


def test_stream_round_trip_wire_canonical_wire():
    again = decode_stream(encode_stream(WIRE_EVENTS))
    assert again == WIRE_EVENTS


# ======================================================== upstream side: encode_request


def test_encode_request_anthropic_rules():
    req = Request(
        model="alias",
        system=[Text(text="sys"), Text(text=" ")],
        messages=[
            Message(role="assistant", content=[Text(text="prefill-first")]),
            Message(role="user", content=[Text(text=""), Text(text="q"), Video(url="https://v")]),
            Message(role="user", content=[Text(text="more")]),
            Message(
                role="assistant",
                content=[
                    Reasoning(text="unsigned"),
                    Reasoning(text="t", signature="S"),
                    ToolCall(id="call.1", name="f", arguments='{"a":1}'),
                ],
            ),
            Message(
                role="user",
                content=[
                    Text(text="see"),
                    ToolResult(call_id="call.1", content=[Text(text="r")], is_error=True),
                ],
            ),
            Message(role="assistant", content=[Text(text="final prefill  \n")]),
        ],
        tools=[Tool(name="f", description="d")],
        tool_choice=ToolChoice(mode="required", parallel=False),
        temperature=0.2,
        top_k=5,
        stop=["X"],
        metadata={"user_id": "u", "other": 1},
        stream=True,
        response_format=ResponseFormat(type="json_schema", schema={"type": "object"}),
    )
    up = codec.encode_request(req, "claude-up")
    assert up.path == "/v1/messages" and up.stream and up.headers == {"anthropic-version": "2023-06-01"}
    body = orjson.loads(up.body)
    assert body["model"] == "claude-up" and body["max_tokens"] == 4096 and body["stream"] is True
    assert body["system"] == "sys"
    roles = [m["role"] for m in body["messages"]]
    assert roles == ["user", "assistant", "user", "assistant", "user", "assistant"]
    assert body["messages"][0]["content"] == [{"type": "text", "text": "."}]
    assert body["messages"][2]["content"] == [{"type": "text", "text": "q"}, {"type": "text", "text": "more"}]
    assert body["messages"][3]["content"] == [
        {"type": "thinking", "thinking": "t", "signature": "S"},
        {"type": "tool_use", "id": "call_1", "name": "f", "input": {"a": 1}},
    ]
    assert body["messages"][4]["content"] == [
        {
            "type": "tool_result",
            "tool_use_id": "call_1",
            "content": [{"type": "text", "text": "r"}],
            "is_error": True,
        },
        {"type": "text", "text": "see"},
    ]
    assert body["messages"][5]["content"] == [{"type": "text", "text": "final prefill"}]
    assert body["tools"] == [
        {"name": "f", "description": "d", "input_schema": {"type": "object", "properties": {}}}
    ]
    assert body["tool_choice"] == {"type": "any", "disable_parallel_tool_use": True}
    assert (body["temperature"], body["top_k"], body["stop_sequences"]) == (0.2, 5, ["X"])
    assert body["metadata"] == {"user_id": "u"}
    assert body["output_config"] == {"format": {"type": "json_schema", "schema": {"type": "object"}}}


def test_encode_request_thinking_budget_rules():
    def th(**kw):
        body = orjson.loads(
            codec.encode_request(
                Request(model="m", messages=[Message(role="user", content=[Text(text="x")])], **kw), "m"
            ).body
        )
        return body.get("thinking"), body["max_tokens"]

    assert th(reasoning=ReasoningConfig(effort="high")) == (
        {"type": "enabled", "budget_tokens": 4096},
        4096 + 4096,
    )
    assert th(reasoning=ReasoningConfig(budget_tokens=3000), max_tokens=2000) == (
        {"type": "enabled", "budget_tokens": 1999},
        2000,
    )
    assert th(reasoning=ReasoningConfig(budget_tokens=3000), max_tokens=500) == (None, 500)
    assert th(reasoning=ReasoningConfig(enabled=False)) == ({"type": "disabled"}, 4096)
    assert th(reasoning=ReasoningConfig(effort="low"), max_tokens=8000) == (
        {"type": "enabled", "budget_tokens": 1024},
        8000,
    )
    assert th() == (None, 4096)


def test_encode_request_image_and_server_tool_passthrough():
    r = dec(
        base(
            messages=[
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "image",
                            "source": {"type": "base64", "media_type": "image/png", "data": PNG_B64},
                        },
                        {"type": "image", "source": {"type": "url", "url": "https://x/y.png"}},
                    ],
                }
            ],
            tools=[{"type": "web_search_20250305", "name": "web_search"}],
            thinking={"type": "adaptive"},
        )
    )
    body = orjson.loads(codec.encode_request(r, "m").body)
    assert body["messages"][0]["content"] == [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG_B64}},
        {"type": "image", "source": {"type": "url", "url": "https://x/y.png"}},
    ]
    assert body["tools"] == [{"type": "web_search_20250305", "name": "web_search"}]
    assert body["thinking"] == {"type": "adaptive"}


def test_request_round_trip_wire_canonical_wire():
    wire = {
        "model": "m",
        "max_tokens": 300,
        "system": "sys",
        "stop_sequences": ["Z"],
        "temperature": 0.1,
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "hi"}]},
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "t", "signature": "S"},
                    {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {"x": [1, 2]}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": "toolu_1",
                        "content": [{"type": "text", "text": "ok"}],
                    },
                    {"type": "text", "text": "go"},
                ],
            },
        ],
        "tools": [{"name": "f", "input_schema": {"type": "object", "properties": {"x": {"type": "array"}}}}],
        "tool_choice": {"type": "tool", "name": "f"},
        "metadata": {"user_id": "u"},
    }
    canon = dec(wire)
    again = orjson.loads(codec.encode_request(canon, "m").body)
    assert again == wire
    assert dec(again) == canon


# ======================================================== upstream side: decode_response / decode_error


def test_decode_response_and_round_trip():
    wire = {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "claude",
        "content": [
            {"type": "thinking", "thinking": "t", "signature": "S"},
            {"type": "redacted_thinking", "data": "R"},
            {"type": "server_tool_use", "id": "s", "name": "web_search", "input": {}},
            {"type": "text", "text": "hi"},
            {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {"a": 1}},
        ],
        "stop_reason": "pause_turn",
        "stop_sequence": None,
        "usage": {
            "input_tokens": 10,
            "output_tokens": 4,
            "cache_read_input_tokens": 3,
            "cache_creation_input_tokens": 2,
        },
    }
    r = codec.decode_response(orjson.dumps(wire))
    assert r.content == [
        Reasoning(text="t", signature="S"),
        Reasoning(redacted="R"),
        Text(text="hi"),
        ToolCall(id="toolu_1", name="f", arguments='{"a":1}'),
    ]
    assert r.stop_reason is StopReason.MAX_TOKENS
    assert r.usage == Usage(input_tokens=15, output_tokens=4, cached_tokens=3, cache_creation_tokens=2)
    out = orjson.loads(codec.encode_response(r, dec(base())))
    assert out["usage"] == wire["usage"] and out["content"][-1] == wire["content"][-1]
    with pytest.raises(GatewayError) as e:
        codec.decode_response(b"<html>")
    assert e.value.kind is ErrorKind.UPSTREAM


def test_decode_error_statuses():
    body = orjson.dumps({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
    e = codec.decode_error(529, body, {})
    assert e.kind is ErrorKind.OVERLOADED and e.message == "Overloaded"
    e = codec.decode_error(
        429,
        orjson.dumps({"type": "error", "error": {"type": "rate_limit_error", "message": "slow"}}),
        {"Retry-After": "7"},
    )
    assert e.kind is ErrorKind.RATE_LIMITED and e.retry_after == 7.0 and e.message == "slow"
    e = codec.decode_error(
        401, b'{"type":"error","error":{"type":"authentication_error","message":"bad key"}}', {}
    )
    assert e.kind is ErrorKind.AUTH and e.status == 502
    e = codec.decode_error(500, b"gateway exploded", {})
    assert e.kind is ErrorKind.UPSTREAM and "exploded" in e.message
    assert codec.decode_error(400, b"", {}).kind is ErrorKind.INVALID_REQUEST


# ======================================================== fuzz

JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=8),
    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8), c, max_size=4),
    max_leaves=20,
)
KEYS = [
    "model",
    "max_tokens",
    "messages",
    "system",
    "tools",
    "tool_choice",
    "thinking",
    "output_config",
    "stop_sequences",
    "temperature",
    "top_k",
    "metadata",
    "content",
    "role",
    "type",
    "text",
    "source",
    "data",
    "url",
    "media_type",
    "tool_use_id",
    "input",
    "id",
    "name",
    "input_schema",
    "budget_tokens",
    "format",
    "schema",
    "signature",
    "thinking",
    "is_error",
    "stream",
    "output_format",
]
VALID = {
    "model": "m",
    "max_tokens": 10,
    "system": [{"type": "text", "text": "s"}],
    "messages": [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "hi"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG_B64}},
            ],
        },
        {
            "role": "assistant",
            "content": [
                {"type": "tool_use", "id": "t", "name": "f", "input": {}},
                {"type": "thinking", "thinking": "x", "signature": "s"},
            ],
        },
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": "r"}]},
    ],
    "tools": [{"name": "f", "input_schema": {"type": "object"}}],
    "tool_choice": {"type": "auto"},
    "thinking": {"type": "enabled", "budget_tokens": 1024},
    "output_config": {"format": {"type": "json_schema", "schema": {}}},
}


def _mutate(obj, path, value):
    if not path:
        return value
    key, rest = path[0], path[1:]
    if isinstance(obj, dict):
        k = key if isinstance(key, str) else (list(obj)[key % len(obj)] if obj else "x")
        new = dict(obj)
        new[k] = _mutate(obj.get(k), rest, value)
        return new
    if isinstance(obj, list) and obj:
        i = key % len(obj) if isinstance(key, int) else 0
        new = list(obj)
        new[i] = _mutate(obj[i], rest, value)
        return new
    return value


def _check_decode(body: bytes) -> None:
    for fn in (lambda b: codec.decode_request(b, CTX_NEW), lambda b: decode_count_tokens_request(b, CTX_OLD)):
        try:
            r = fn(body)
        except GatewayError as e:
            assert 400 <= e.status < 500
        else:
            assert isinstance(r, Request)
            codec.encode_request(r, "m")  # whatever decodes must also encode upstream


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(JSON, st.dictionaries(st.sampled_from(KEYS), JSON, max_size=6)))
def test_fuzz_random_json(value):
    _check_decode(orjson.dumps(value))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(st.sampled_from(KEYS), st.integers(0, 5)), min_size=1, max_size=5), JSON)
def test_fuzz_mutated_valid_request(path, value):
    _check_decode(orjson.dumps(_mutate(VALID, path, value)))


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=64))
def test_fuzz_raw_bytes(body):
    _check_decode(body)


def test_fuzz_seed_is_valid():
    r = dec(VALID)
    assert r.messages[2].content[0].name == "f"


# ======================================================== the real anthropic SDK parsing our bytes


class Mock:
    """An httpx2 transport: decodes the SDK's request with our codec and replies with our encoder's bytes."""

    def __init__(self, reply):
        self.reply = reply
        self.seen: list[tuple[dict, Request]] = []

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        headers = {k.lower(): v for k, v in request.headers.items()}
        path = request.url.path
        if path.endswith("/count_tokens"):
            req = decode_count_tokens_request(request.read(), RequestContext(headers=headers))
            self.seen.append((headers, req))
            return httpx2.Response(
                200, content=encode_count_tokens(7), headers={"content-type": "application/json"}
            )
        if path == "/v1/models":
            return httpx2.Response(
                200,
                content=encode_models(
                    [ModelInfo(id="a", created=1_700_000_000, context_length=8192), ModelInfo(id="b")]
                ),
                headers={"content-type": "application/json"},
            )
        try:
            req = codec.decode_request(request.read(), RequestContext(headers=headers))
        except GatewayError as e:
            er = codec.encode_error(e)
            return httpx2.Response(
                er.status, content=er.body, headers={"content-type": "application/json", **er.headers}
            )
        self.seen.append((headers, req))
        return self.reply(req)


def sdk(reply, **kw) -> tuple[anthropic.Anthropic, Mock]:
    m = Mock(reply)
    client = anthropic.Anthropic(
        api_key="sk-ant-test",
        base_url="http://gw.test",
        max_retries=0,
        http_client=httpx2.Client(transport=httpx2.MockTransport(m)),
        **kw,
    )
    return client, m


def stream_reply(events):
    def reply(req):
        enc = codec.stream_encoder(req)
        body = b"".join(enc.feed(e) for e in events) + enc.close()
        return httpx2.Response(200, content=body, headers={"content-type": "text/event-stream"})

    return reply


def json_reply(resp: Response):
    return lambda req: httpx2.Response(
        200, content=codec.encode_response(resp, req), headers={"content-type": "application/json"}
    )


FULL_RESPONSE = Response(
    id="gen-1",
    model="up",
    stop_reason=StopReason.TOOL_USE,
    usage=Usage(input_tokens=12, output_tokens=9, cached_tokens=2),
    content=[
        Reasoning(text="hmm", signature="SIG"),
        Text(text="Hi"),
        ToolCall(id="call|1", name="get_weather", arguments='{"city":"Paris"}'),
    ],
)
MSGS = [{"role": "user", "content": "What's the weather?"}]


@pytest.mark.parametrize("headers", [None, {"anthropic-version": "2023-06-01"}])
def test_sdk_create_non_stream(headers):
    client, m = sdk(json_reply(FULL_RESPONSE), **({"default_headers": headers} if headers else {}))
    msg = client.messages.create(
        model="claude-x",
        max_tokens=50,
        messages=MSGS,
        thinking={"type": "enabled", "budget_tokens": 1024},
        extra_body={"temperature": 0.3},
    )
    assert msg.id == "msg_gen-1" and msg.stop_reason == "tool_use"
    assert [b.type for b in msg.content] == ["thinking", "text", "tool_use"]
    assert msg.content[0].signature == "SIG" and msg.content[2].id == "call_1"
    assert msg.content[2].input == {"city": "Paris"}
    assert (msg.usage.input_tokens, msg.usage.cache_read_input_tokens, msg.usage.output_tokens) == (10, 2, 9)
    sent_headers, req = m.seen[0]
    assert sent_headers["authorization"] == "Bearer sk-ant-test"
    assert sent_headers["anthropic-version"] == (headers or {}).get("anthropic-version", "2026-10-21")
    assert req.temperature == 0.3 and req.reasoning.budget_tokens == 1024


def test_sdk_create_stream_true():
    client, _ = sdk(stream_reply(FULL_EVENTS))
    events = list(client.messages.create(model="claude-x", max_tokens=50, messages=MSGS, stream=True))
    types = [e.type for e in events]
    assert types[0] == "message_start" and types[-2:] == ["message_delta", "message_stop"]
    assert events[-2].usage.output_tokens == 30 and events[-2].delta.stop_reason == "tool_use"
    text = "".join(
        e.delta.text for e in events if e.type == "content_block_delta" and e.delta.type == "text_delta"
    )
    assert text == "Hello"


@pytest.mark.parametrize("headers", [None, {"anthropic-version": "2023-06-01"}])
def test_sdk_stream_helper_final_message(headers):
    client, _ = sdk(stream_reply(FULL_EVENTS), **({"default_headers": headers} if headers else {}))
    with client.messages.stream(
        model="claude-x", max_tokens=2000, messages=MSGS, thinking={"type": "enabled", "budget_tokens": 1024}
    ) as s:
        text = "".join(s.text_stream)
        final = s.get_final_message()
    assert text == "Hello"
    assert [b.type for b in final.content] == ["thinking", "text", "tool_use"]
    assert final.content[0].thinking == "Let me think" and final.content[0].signature == "sig123"
    assert final.content[2].input == {"city": "Paris"} and final.stop_reason == "tool_use"
    assert (final.usage.input_tokens, final.usage.cache_read_input_tokens, final.usage.output_tokens) == (
        20,
        5,
        30,
    )


def test_sdk_unsigned_reasoning_from_other_providers_parses():
    evs = [
        MessageStart(id="chatcmpl-9", model="gpt"),
        BlockStart(index=0, block=Reasoning()),
        ReasoningDelta(index=0, text="r"),
        BlockStop(index=0),
        BlockStart(index=1, block=Text(text="")),
        TextDelta(index=1, text="ok"),
        BlockStop(index=1),
        MessageDelta(stop_reason=StopReason.END_TURN, usage=Usage(input_tokens=3, output_tokens=2)),
        MessageStop(),
    ]
    client, _ = sdk(stream_reply(evs))
    with client.messages.stream(model="claude-x", max_tokens=10, messages=MSGS) as s:
        final = s.get_final_message()
    assert final.content[0].type == "thinking" and final.content[0].signature == ""
    assert (final.usage.input_tokens, final.usage.output_tokens) == (3, 2)  # usage known only at the end
    assert final.content[1].text == "ok"


def test_sdk_mid_stream_error_raises():
    evs = [
        MessageStart(id="m", model="x"),
        BlockStart(index=0, block=Text(text="")),
        TextDelta(index=0, text="a"),
        StreamError(kind="overloaded", message="Overloaded"),
    ]
    client, _ = sdk(stream_reply(evs))
    with (
        pytest.raises(anthropic.APIStatusError) as e,
        client.messages.stream(model="claude-x", max_tokens=10, messages=MSGS) as s,
    ):
        s.get_final_message()
    assert "Overloaded" in str(e.value)


@pytest.mark.parametrize(
    "kind,exc",
    [
        (ErrorKind.INVALID_REQUEST, anthropic.BadRequestError),
        (ErrorKind.OVERLOADED, anthropic.OverloadedError),
        (ErrorKind.RATE_LIMITED, anthropic.RateLimitError),
        (ErrorKind.TOO_LARGE, anthropic.APIStatusError),
        (ErrorKind.NOT_FOUND, anthropic.NotFoundError),
    ],
)
def test_sdk_error_classes(kind, exc):
    def reply(req):
        er = codec.encode_error(GatewayError(kind, "nope", retry_after=1))
        return httpx2.Response(
            er.status, content=er.body, headers={"content-type": "application/json", **er.headers}
        )

    client, _ = sdk(reply)
    with pytest.raises(exc) as e:
        client.messages.create(model="claude-x", max_tokens=5, messages=MSGS)
    assert e.value.body["error"]["message"] == "nope"


def test_sdk_missing_max_tokens_is_bad_request():
    client, _ = sdk(json_reply(FULL_RESPONSE))
    with pytest.raises(anthropic.BadRequestError) as e:
        client.messages.create(model="claude-x", messages=MSGS, max_tokens=None, stream=True)  # type: ignore
    assert e.value.body["error"]["type"] == "invalid_request_error" and "max_tokens" in e.value.message


def test_sdk_system_role_message_and_count_tokens_and_models():
    client, m = sdk(json_reply(FULL_RESPONSE))
    client.messages.create(
        model="claude-x", max_tokens=5, system="top", messages=[{"role": "system", "content": "inner"}, *MSGS]
    )
    assert [t.text for t in m.seen[-1][1].system] == ["top", "inner"]
    assert client.messages.count_tokens(model="claude-x", messages=MSGS).input_tokens == 7
    models = client.models.list()
    assert [x.id for x in models.data] == ["a", "b"]
    assert models.data[0].created_at.year == 2023 and models.data[0].type == "model"
    assert orjson.loads(encode_model(ModelInfo(id="a")))["id"] == "a"


# ======================================================== the fake upstream, spoken to by the real SDK


@pytest.fixture(scope="module")
def fake():
    f = AnthropicUpstream(api_key="sk-ant-fake").start()
    yield f
    f.stop()


def real(fake, **kw) -> anthropic.Anthropic:
    return anthropic.Anthropic(api_key="sk-ant-fake", base_url=fake.url, max_retries=0, **kw)


TOOLS = [
    {"name": "get_weather", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}
]


def test_fake_sdk_create_and_stream(fake):
    c = real(fake)
    msg = c.messages.create(
        model="claude-fake",
        max_tokens=100,
        system="sys",
        messages=[{"role": "user", "content": "hello there"}],
    )
    assert msg.content[0].text == "You said: hello there | system=sys images=0 turns=1"
    assert msg.usage.cache_read_input_tokens == 0 and msg.stop_reason == "end_turn"
    assert fake.last.headers["authorization"] == "Bearer sk-ant-fake"
    with c.messages.stream(
        model="claude-fake", max_tokens=100, messages=[{"role": "user", "content": "hi"}]
    ) as s:
        final = s.get_final_message()
    assert final.content[0].text.startswith("You said: hi") and final.usage.output_tokens > 0
    msg = real(fake, default_headers={"anthropic-version": "2023-06-01"}).messages.create(
        model="m", max_tokens=3, messages=[{"role": "user", "content": "one two three four five"}]
    )
    assert msg.stop_reason == "max_tokens" and fake.last.headers["anthropic-version"] == "2023-06-01"


def test_fake_sdk_tool_call_and_result(fake):
    c = real(fake)
    with c.messages.stream(
        model="m", max_tokens=100, tools=TOOLS, messages=[{"role": "user", "content": "weather please"}]
    ) as s:
        final = s.get_final_message()
    call = final.content[-1]
    assert call.type == "tool_use" and call.input == {"city": "Paris"} and final.stop_reason == "tool_use"
    msg = c.messages.create(
        model="m",
        max_tokens=100,
        tools=TOOLS,
        messages=[
            {"role": "user", "content": "weather please"},
            {
                "role": "assistant",
                "content": [{"type": "tool_use", "id": call.id, "name": call.name, "input": call.input}],
            },
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "sunny"}],
            },
        ],
    )
    assert msg.content[0].text == "The tool said: sunny"


def test_fake_errors_auth_and_version(fake):
    with pytest.raises(anthropic.AuthenticationError) as e:
        anthropic.Anthropic(api_key="wrong", base_url=fake.url, max_retries=0).messages.create(
            model="m", max_tokens=5, messages=MSGS
        )
    assert e.value.body["error"]["type"] == "authentication_error"
    with pytest.raises(anthropic.RateLimitError) as e:
        real(fake).messages.create(
            model="m", max_tokens=5, messages=[{"role": "user", "content": "FAIL_STATUS_429"}]
        )
    assert e.value.response.headers["retry-after"] == "1"
    with pytest.raises(anthropic.OverloadedError):
        real(fake).messages.create(
            model="m", max_tokens=5, messages=[{"role": "user", "content": "FAIL_STATUS_529"}]
        )
    with (
        pytest.raises(anthropic.APIStatusError) as e,
        real(fake).messages.stream(
            model="m", max_tokens=50, messages=[{"role": "user", "content": "FAIL_MIDSTREAM now"}]
        ) as s,
    ):
        for _ in s:
            pass
    assert "overloaded_error" in str(e.value)
    # the legacy wire: x-api-key + 2023-06-01; the version header is required by the real service
    ok = httpx.post(
        fake.url + "/v1/messages",
        json=base(),
        headers={"x-api-key": "sk-ant-fake", "anthropic-version": "2023-06-01"},
    )
    assert ok.status_code == 200 and ok.json()["type"] == "message"
    nov = httpx.post(fake.url + "/v1/messages", json=base(), headers={"x-api-key": "sk-ant-fake"})
    assert nov.status_code == 400 and nov.json()["error"]["type"] == "invalid_request_error"
    assert real(fake).messages.count_tokens(model="m", messages=MSGS).input_tokens == 3


def test_fake_slow_streams_incrementally(fake):
    c = real(fake)
    t0 = time.monotonic()
    first = None
    with c.messages.stream(model="m", max_tokens=50, messages=[{"role": "user", "content": "SLOW"}]) as s:
        for ev in s:
            if ev.type == "text" and first is None:
                first = time.monotonic() - t0
    total = time.monotonic() - t0
    assert first is not None and total - first > 1.0


# ======================================================== our upstream side against the fake (real HTTP)


def call_fake(fake, req: Request):
    up = codec.encode_request(req, "claude-fake")
    r = httpx.post(
        fake.url + up.path,
        content=up.body,
        headers={**up.headers, "x-api-key": "sk-ant-fake", "content-type": "application/json"},
    )
    if r.status_code != 200:
        raise codec.decode_error(r.status_code, r.content, r.headers)
    if not req.stream:
        return codec.decode_response(r.content)
    d = codec.stream_decoder()
    out: list = []
    for chunk in r.iter_bytes(7) if hasattr(r, "iter_bytes") else [r.content]:
        out += d.feed(chunk)
    return out + d.close()


def test_upstream_side_against_fake(fake):
    msgs = [
        Message(role="assistant", content=[Text(text="earlier")]),
        Message(role="user", content=[Text(text="")]),
        Message(role="user", content=[Text(text="weather?")]),
        Message(
            role="assistant",
            content=[Reasoning(text="unsigned"), ToolCall(id="call:1", name="get_weather", arguments="{}")],
        ),
        Message(
            role="user", content=[Text(text="and"), ToolResult(call_id="call:1", content=[Text(text="rain")])]
        ),
    ]
    req = Request(model="alias", messages=msgs, tools=[Tool(name="get_weather")])
    resp = call_fake(fake, req)
    assert resp.content == [Text(text="The tool said: rain")]
    sent = fake.last.json
    assert fake.last.headers["anthropic-version"] == "2023-06-01" and sent["max_tokens"] == 4096
    assert sent["messages"][-1]["content"][0]["type"] == "tool_result"

    req = Request(
        model="alias",
        messages=[Message(role="user", content=[Text(text="weather now")])],
        tools=[Tool(name="get_weather")],
        stream=True,
    )
    evs = call_fake(fake, req)
    assert isinstance(evs[0], MessageStart) and isinstance(evs[-1], MessageStop)
    args = "".join(e.json for e in evs if isinstance(e, ToolArgsDelta))
    assert orjson.loads(args) == {"city": "Paris"}
    assert evs[-2].stop_reason is StopReason.TOOL_USE and evs[-2].usage.output_tokens == 5

    evs = call_fake(
        fake,
        Request(
            model="a", messages=[Message(role="user", content=[Text(text="FAIL_MIDSTREAM")])], stream=True
        ),
    )
    assert isinstance(evs[-1], StreamError) and evs[-1].kind == "overloaded"
    with pytest.raises(GatewayError) as e:
        call_fake(
            fake, Request(model="a", messages=[Message(role="user", content=[Text(text="FAIL_STATUS_529")])])
        )
    assert e.value.kind is ErrorKind.OVERLOADED and "scripted" in e.value.message


def test_encode_request_thinking_compat_and_foreign_reasoning():
    user = Message(role="user", content=[Text(text="x")])

    def body(**kw):
        return orjson.loads(codec.encode_request(Request(model="m", messages=[user], **kw), "m").body)

    b = body(reasoning=ReasoningConfig(effort="low"), temperature=0.2, top_k=3, top_p=0.5)
    assert b["thinking"]["type"] == "enabled" and not {"temperature", "top_k", "top_p"} & set(b)
    assert body(reasoning=ReasoningConfig(effort="low"), top_p=0.97)["top_p"] == 0.97
    b = body(
        reasoning=ReasoningConfig(effort="low"),
        temperature=0.2,
        tools=[Tool(name="f", parameters={})],
        tool_choice=ToolChoice(mode="tool", name="f"),
    )
    assert (
        "thinking" not in b and b["temperature"] == 0.2 and b["tool_choice"] == {"type": "tool", "name": "f"}
    )
    assert b["tools"][0]["input_schema"] == {"type": "object"}
    asst = Message(
        role="assistant",
        content=[
            Reasoning(text="g", signature="gemini:abc"),
            Reasoning(text="summary", redacted="ENC"),
            Reasoning(redacted="R"),
            Reasoning(text="a", signature="EqQBCkYIBxgCKkB"),
            Text(text="ok"),
        ],
    )
    b = orjson.loads(codec.encode_request(Request(model="m", messages=[user, asst]), "m").body)
    assert b["messages"][1]["content"] == [
        {"type": "redacted_thinking", "data": "R"},
        {"type": "thinking", "thinking": "a", "signature": "EqQBCkYIBxgCKkB"},
        {"type": "text", "text": "ok"},
    ]


def test_stream_decoder_closes_interleaved_blocks():
    data = (
        b'event: message_start\ndata: {"type":"message_start","message":{"id":"m","model":"c","content":[],'
        b'"usage":{"input_tokens":1,"output_tokens":0}}}\n\n'
        b'event: content_block_start\ndata: {"type":"content_block_start","index":0,"content_block":'
        b'{"type":"text","text":""}}\n\n'
        b'event: content_block_start\ndata: {"type":"content_block_start","index":1,"content_block":'
        b'{"type":"tool_use","id":"t","name":"f","input":{"a":1}}}\n\n'
        b'event: content_block_stop\ndata: {"type":"content_block_stop","index":0}\n\n'
        b'event: message_stop\ndata: {"type":"message_stop"}\n\n'
    )
    evs = decode_stream(data)
    assert evs[1:6] == [
        BlockStart(index=0, block=Text(text="")),
        BlockStop(index=0),
        BlockStart(index=1, block=ToolCall(id="t", name="f", arguments="")),
        ToolArgsDelta(index=1, json='{"a":1}'),
        BlockStop(index=1),
    ]
    assert isinstance(evs[-1], MessageStop)


def test_claude_code_billing_header_only_reaches_anthropic():
    bh = "x-anthropic-billing-header: cc_version=2.1.80.abc; cc_entrypoint=cli; cch=00000;"
    r = dec(base(system=[{"type": "text", "text": bh}, {"type": "text", "text": "You are Claude Code."}]))
    assert r.system == [Text(text="You are Claude Code.")] and r.extra["anthropic_billing_header"] == bh
    sent = orjson.loads(codec.encode_request(r, "m").body)
    assert sent["system"] == [{"type": "text", "text": bh}, {"type": "text", "text": "You are Claude Code."}]


def test_effort_replays_to_anthropic_without_switching_thinking_on():
    r = dec(base(output_config={"effort": "low"}))
    assert r.reasoning == ReasoningConfig(effort="low")
    sent = orjson.loads(codec.encode_request(r, "m").body)
    assert "thinking" not in sent and sent["output_config"] == {"effort": "low"}
    r = dec(base(thinking={"type": "adaptive"}, output_config={"effort": "max"}))
    sent = orjson.loads(codec.encode_request(r, "m").body)
    assert sent["thinking"] == {"type": "adaptive"} and sent["output_config"] == {"effort": "max"}


_FRAME_TYPES = [
    "message_start",
    "content_block_start",
    "content_block_delta",
    "content_block_stop",
    "message_delta",
    "message_stop",
    "ping",
    "error",
    "bogus",
]
_SMALL = (
    st.none()
    | st.integers(-2, 5)
    | st.text(max_size=3)
    | st.dictionaries(
        st.sampled_from(["type", "input_tokens", "output_tokens", "message", "id", "model"]),
        st.integers(0, 5) | st.text(max_size=3),
        max_size=3,
    )
)
_FRAME = st.fixed_dictionaries(
    {"type": st.sampled_from(_FRAME_TYPES)},
    optional={
        "index": st.integers(-1, 3) | _SMALL | st.lists(st.integers(0, 3), max_size=1),
        "message": _SMALL | st.just({"usage": {}}),
        "content_block": st.sampled_from(
            [
                {"type": "text", "text": "a"},
                {"type": "tool_use", "id": "t", "name": "f", "input": {"a": 1}},
                {"type": "thinking"},
                {"type": "redacted_thinking", "data": "d"},
                {"type": "x"},
            ]
        )
        | _SMALL,
        "delta": st.sampled_from(
            [
                {"type": "text_delta", "text": "t"},
                {"type": "thinking_delta", "thinking": "h"},
                {"type": "signature_delta", "signature": "s"},
                {"type": "input_json_delta", "partial_json": "{"},
                {"stop_reason": "tool_use"},
            ]
        )
        | _SMALL,
        "usage": _SMALL,
        "error": _SMALL | st.fixed_dictionaries({"type": _SMALL | st.just([1])}),
    },
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_FRAME, max_size=10), st.integers(1, 50), st.booleans())
def test_fuzz_stream_decoder_keeps_its_guarantees(frames_, step, with_event_line):
    data = b"".join(
        (b"event: " + f["type"].encode() + b"\n" if with_event_line else b"")
        + b"data: "
        + orjson.dumps(f)
        + b"\n\n"
        for f in frames_
    )
    evs = decode_stream(data, step)
    assert evs, "close() must always report something"
    assert isinstance(evs[-1], (MessageStop, StreamError))
    if not isinstance(evs[0], StreamError):
        assert isinstance(evs[0], MessageStart)
    opened: list[int] = []
    for e in evs:
        if isinstance(e, BlockStart):
            assert e.index == len(opened) and (not opened or opened[-1] is None)
            opened.append(e.index)
        elif isinstance(e, BlockStop):
            assert opened and opened[-1] == e.index
            opened[-1] = None  # type: ignore[call-overload]
        elif isinstance(e, (TextDelta, ToolArgsDelta, ReasoningDelta, SignatureDelta)):
            assert opened and opened[-1] == e.index
        elif isinstance(e, MessageDelta):
            assert not opened or opened[-1] is None
    # and the client encoder accepts whatever the decoder produced
    encode_stream(evs)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.one_of(
            st.sampled_from(
                [
                    "content",
                    "usage",
                    "stop_reason",
                    "stop_sequence",
                    "type",
                    "id",
                    "input",
                    "signature",
                    "thinking",
                    "data",
                    "text",
                ]
            ),
            st.integers(0, 5),
        ),
        min_size=1,
        max_size=4,
    ),
    JSON,
)
def test_fuzz_decode_response_only_raises_gateway_errors(path, value):
    wire = {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "c",
        "stop_reason": "end_turn",
        "content": [
            {"type": "text", "text": "hi"},
            {"type": "thinking", "thinking": "t", "signature": "s"},
            {"type": "tool_use", "id": "t", "name": "f", "input": {}},
        ],
        "usage": {"input_tokens": 1, "output_tokens": 1},
    }
    try:
        r = codec.decode_response(orjson.dumps(_mutate(wire, path, value)))
    except GatewayError as e:
        assert e.kind is ErrorKind.UPSTREAM
    else:
        codec.encode_response(r, dec(base()))


async def test_async_sdk_stream_helper_and_fake_models(fake):
    m = Mock(stream_reply(FULL_EVENTS))
    client = anthropic.AsyncAnthropic(api_key="k", base_url="http://gw.test", max_retries=0,
                                      http_client=httpx2.AsyncClient(transport=httpx2.MockTransport(m)))
    async with client.messages.stream(model="claude-x", max_tokens=10, messages=MSGS) as s:
        final = await s.get_final_message()
    assert [b.type for b in final.content] == ["thinking", "text", "tool_use"]
    assert [x.id for x in real(fake).models.list().data] == ["claude-fake"]


def test_fake_legacy_wire_x_api_key_via_sdk(fake, monkeypatch):
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    monkeypatch.delenv("ANTHROPIC_AUTH_TOKEN", raising=False)
    legacy = {"x-api-key": "sk-ant-fake", "anthropic-version": "2023-06-01"}
    c = anthropic.Anthropic(api_key=None, base_url=fake.url, max_retries=0, default_headers=legacy)
    with c.messages.stream(model="m", max_tokens=50, messages=[{"role": "user", "content": "hi"}]) as s:
        assert s.get_final_message().content[0].text.startswith("You said: hi")
    assert "authorization" not in fake.last.headers
    assert {k: fake.last.headers[k] for k in legacy} == legacy
