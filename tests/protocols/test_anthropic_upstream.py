"""Anthropic Messages codec, upstream side: encoding requests, decoding responses, errors and streams."""

from __future__ import annotations

import orjson
import pytest

from smolgate.canonical import (
    BlockStart,
    BlockStop,
    Message,
    MessageDelta,
    MessageStart,
    MessageStop,
    Reasoning,
    ReasoningConfig,
    ReasoningDelta,
    Request,
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
from tests.protocols.anthropic_helpers import (
    PNG_B64,
    base,
    codec,
    dec,
    decode_stream,
    encode_stream,
)

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
    assert evs[-1] == StreamError(kind=ErrorKind.OVERLOADED, message="Overloaded") and len(evs) == 2
    cut = WIRE_STREAM.index(b"event: message_delta")
    evs = decode_stream(WIRE_STREAM[:cut])
    assert isinstance(evs[-1], StreamError) and evs[-1].kind is ErrorKind.UPSTREAM
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
    assert r.system == [Text(text="You are Claude Code.")] and r.extras.anthropic.billing_header == bh
    sent = orjson.loads(codec.encode_request(r, "m").body)
    assert sent["system"] == [{"type": "text", "text": bh}, {"type": "text", "text": "You are Claude Code."}]


def test_effort_replays_to_anthropic_without_switching_thinking_on():
    r = dec(base(output_config={"effort": "low"}))
    assert r.reasoning == ReasoningConfig(
        effort="low", hint=True
    )  # an effort alone is not a request to think
    sent = orjson.loads(codec.encode_request(r, "m").body)
    assert "thinking" not in sent and sent["output_config"] == {"effort": "low"}
    r = dec(base(thinking={"type": "adaptive"}, output_config={"effort": "max"}))
    sent = orjson.loads(codec.encode_request(r, "m").body)
    assert sent["thinking"] == {"type": "adaptive"} and sent["output_config"] == {"effort": "max"}
