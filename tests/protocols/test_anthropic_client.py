"""Anthropic Messages codec, client side: decoding requests, encoding responses, errors and streams."""

from __future__ import annotations

import orjson
import pytest

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
    Response,
    ResponseFormat,
    StopReason,
    StreamError,
    Text,
    TextDelta,
    Tool,
    ToolCall,
    ToolChoice,
    ToolResult,
    Usage,
)
from smolgate.errors import ErrorKind, GatewayError
from smolgate.protocols.anthropic import (
    decode_count_tokens_request,
    encode_count_tokens,
)
from smolgate.protocols.base import RequestContext
from tests.protocols.anthropic_helpers import (
    CTX_NEW,
    CTX_NONE,
    CTX_OLD,
    FULL_EVENTS,
    PNG,
    PNG_B64,
    bad,
    base,
    codec,
    dec,
    encode_stream,
    frames,
)

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
    assert r.extras.anthropic.server_tools == [tools[1]]
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
    assert r.extras.anthropic.beta == "interleaved-thinking-2025-05-14"
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
        StreamError(kind=ErrorKind.OVERLOADED, message="Overloaded"),
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
