"""OpenAI Chat Completions codec: both sides, streaming, errors, §8 gotchas, SDK parses, fuzz, fake upstream."""

from __future__ import annotations

import base64
import json

import httpx
import openai
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
    StopReason,
    StreamError,
    Text,
    TextDelta,
    ToolArgsDelta,
    ToolCall,
    ToolResult,
    Usage,
    Video,
)
from smolgate.errors import ErrorKind, GatewayError
from smolgate.protocols.base import ModelInfo, RequestContext
from smolgate.protocols.openai_chat import OpenAIChatCodec, encode_model, encode_models
from tests.fakes.openai_upstream import OpenAIUpstream
from tests.protocols.fuzz import (
    assert_request_or_4xx,
    assert_stream_guarantees,
    decode_in_steps,
    json_values,
    mutate,
)

C = OpenAIChatCodec()
CTX = RequestContext()
PNG = b"\x89PNG\r\n\x1a\nfakepng"
PNG_URL = "data:image/png;base64," + base64.b64encode(PNG).decode()


def dec(body: dict) -> Request:
    return C.decode_request(orjson.dumps(body), CTX)


def bad(body: dict | bytes) -> GatewayError:
    with pytest.raises(GatewayError) as ei:
        C.decode_request(body if isinstance(body, bytes) else orjson.dumps(body), CTX)
    assert ei.value.kind is ErrorKind.INVALID_REQUEST and ei.value.status == 400
    return ei.value


def sdk(
    body: bytes,
    status: int = 200,
    headers: dict | None = None,
    stream: bool = False,
    seen: list | None = None,
) -> openai.OpenAI:
    """An OpenAI SDK client whose HTTP transport answers with these exact bytes (a real SDK parse)."""

    def handler(request: httpx.Request) -> httpx.Response:
        if seen is not None:
            seen.append(request)
        h = {"content-type": "text/event-stream" if stream else "application/json", **(headers or {})}
        return httpx.Response(status, content=body, headers=h)

    return openai.OpenAI(
        api_key="sk-x",
        base_url="http://gw/v1",
        max_retries=0,
        http_client=httpx.Client(transport=httpx.MockTransport(handler)),
    )


# ---------------------------------------------------------------- decode_request


def test_decode_full_request():
    r = dec(
        {
            "model": "gpt",
            "stream": True,
            "stream_options": {"include_usage": True},
            "messages": [
                {"role": "system", "content": "S1"},
                {"role": "developer", "content": [{"type": "text", "text": "D1"}]},
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "look"},
                        {"type": "image_url", "image_url": {"url": PNG_URL, "detail": "low"}},
                        {"type": "image_url", "image_url": {"url": "https://x/cat.jpg"}},
                        {"type": "video_url", "video_url": {"url": "data:video/mp4;base64,AAAA"}},
                        {"type": "video_url", "video_url": {"url": "http://x/v.mp4"}},
                    ],
                },
                {
                    "role": "assistant",
                    "content": "calling",
                    "reasoning_content": "hmm",
                    "tool_calls": [
                        {"id": "c1", "type": "function", "function": {"name": "f", "arguments": '{"a":1}'}},
                        {"id": "c2", "type": "function", "function": {"name": "g", "arguments": "{}"}},
                    ],
                },
                {"role": "tool", "tool_call_id": "c1", "content": "r1"},
                {"role": "tool", "tool_call_id": "c2", "content": [{"type": "text", "text": "r2"}]},
                {"role": "user", "content": "thanks"},
            ],
            "tools": [
                {
                    "type": "function",
                    "function": {
                        "name": "f",
                        "description": "F",
                        "parameters": {"type": "object"},
                        "strict": True,
                    },
                },
                {"type": "function", "function": {"name": "g"}},
            ],
            "tool_choice": {"type": "function", "function": {"name": "f"}},
            "parallel_tool_calls": False,
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "x", "schema": {"type": "object"}, "strict": True},
            },
            "max_tokens": 5,
            "max_completion_tokens": 9,
            "stop": "END",
            "temperature": 0.5,
            "top_p": 1,
            "seed": 7,
            "top_k": 3,
            "reasoning_effort": "low",
            "frequency_penalty": 0.1,
            "unknown_field": 1,
            "metadata": {"k": "v"},
        }
    )
    assert [t.text for t in r.system] == ["S1", "D1"]
    assert [m.role for m in r.messages] == ["user", "assistant", "user", "user"]
    u = r.messages[0].content
    assert u[0] == Text(text="look")
    assert u[1] == Image(data=PNG, media_type="image/png", detail="low")
    assert u[2] == Image(url="https://x/cat.jpg")
    assert u[3] == Video(data=b"\x00\x00\x00", media_type="video/mp4") and u[4] == Video(url="http://x/v.mp4")
    a = r.messages[1].content
    assert a[0] == Reasoning(text="hmm") and a[1] == Text(text="calling")
    assert a[2] == ToolCall(id="c1", name="f", arguments='{"a":1}')
    # consecutive tool messages → one user turn, names linked from the calls
    assert r.messages[2].content == [
        ToolResult(call_id="c1", content=[Text(text="r1")], name="f"),
        ToolResult(call_id="c2", content=[Text(text="r2")], name="g"),
    ]
    assert r.messages[3].content == [Text(text="thanks")]
    assert r.tools[0].name == "f" and r.tools[0].parameters == {"type": "object"}
    assert r.tools[1].parameters == {"type": "object", "properties": {}}
    assert r.tool_choice.mode == "tool" and r.tool_choice.name == "f" and r.tool_choice.parallel is False
    assert r.response_format.type == "json_schema" and r.response_format.name == "x"
    assert r.response_format.schema == {"type": "object"} and r.response_format.strict is True
    assert r.max_tokens == 9  # max_completion_tokens preferred
    assert r.stop == ["END"] and r.temperature == 0.5 and r.top_p == 1 and r.seed == 7 and r.top_k == 3
    assert r.reasoning == ReasoningConfig(enabled=True, effort="low")
    assert r.stream and r.extras.openai.include_usage is True
    assert r.extras.openai.passthrough == {"frequency_penalty": 0.1}
    assert r.metadata == {"k": "v"}


def test_decode_small_variants():
    r = dec(
        {
            "model": "m",
            "messages": [{"role": "user", "content": "hi"}],
            "max_tokens": 4,
            "stop": ["a", "b"],
            "response_format": {"type": "json_object"},
            "tool_choice": "required",
            "n": 1,
            "reasoning_effort": "none",
        }
    )
    assert r.max_tokens == 4 and r.stop == ["a", "b"] and r.response_format.type == "json_object"
    assert r.tool_choice.mode == "required" and r.reasoning.enabled is False and not r.stream
    r = dec(
        {
            "model": "m",
            "messages": [{"role": "user", "content": "hi"}],
            "response_format": {"type": "text"},
            "stream": True,
        }
    )
    assert r.response_format is None and r.extras.openai.include_usage is False
    r = dec(
        {
            "model": "m",
            "messages": [
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {"id": "c", "type": "function", "function": {"name": "f", "arguments": {"x": 1}}}
                    ],
                }
            ],
        }
    )
    assert r.messages[0].content == [ToolCall(id="c", name="f", arguments='{"x":1}')]


@pytest.mark.parametrize(
    "body,param",
    [
        ({"messages": []}, "model"),
        ({"model": "m"}, "messages"),
        ({"model": "m", "messages": [], "n": 2}, "n"),
        ({"model": "m", "messages": "hi"}, "messages"),
        ({"model": "m", "messages": [1]}, "messages[0]"),
        ({"model": "m", "messages": [{"content": "x"}]}, "messages[0].role"),
        ({"model": "m", "messages": [{"role": "wizard", "content": "x"}]}, "messages[0].role"),
        ({"model": "m", "messages": [{"role": "user", "content": 5}]}, "messages[0].content"),
        (
            {
                "model": "m",
                "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": 3}}]}],
            },
            "messages[0].content[0].image_url.url",
        ),
        (
            {
                "model": "m",
                "messages": [
                    {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "ftp://x"}}]}
                ],
            },
            "messages[0].content[0].image_url.url",
        ),
        (
            {
                "model": "m",
                "messages": [
                    {
                        "role": "user",
                        "content": [{"type": "image_url", "image_url": {"url": "data:image/png,xx"}}],
                    }
                ],
            },
            "messages[0].content[0].image_url.url",
        ),
        (
            {"model": "m", "messages": [{"role": "user", "content": [{"type": "input_audio"}]}]},
            "messages[0].content[0].type",
        ),
        ({"model": "m", "messages": [{"role": "tool", "content": "x"}]}, "messages[0].tool_call_id"),
        (
            {
                "model": "m",
                "messages": [
                    {
                        "role": "assistant",
                        "tool_calls": [{"id": "c", "function": {"name": "f", "arguments": 5}}],
                    }
                ],
            },
            "messages[0].tool_calls[0].function.arguments",
        ),
        (
            {"model": "m", "messages": [{"role": "assistant", "tool_calls": [{"function": {"name": "f"}}]}]},
            "messages[0].tool_calls[0].id",
        ),
        (
            {"model": "m", "messages": [], "tools": [{"type": "function", "function": {}}]},
            "tools[0].function.name",
        ),
        ({"model": "m", "messages": [], "tools": [{"type": "custom", "custom": {}}]}, "tools[0].type"),
        ({"model": "m", "messages": [], "tool_choice": "sometimes"}, "tool_choice"),
        (
            {"model": "m", "messages": [], "response_format": {"type": "json_schema"}},
            "response_format.json_schema",
        ),
        (
            {"model": "m", "messages": [], "response_format": {"type": "json_schema", "json_schema": {}}},
            "response_format.json_schema.name",
        ),
        ({"model": "m", "messages": [], "stop": [1]}, "stop[0]"),
        ({"model": "m", "messages": [], "temperature": "hot"}, "temperature"),
        ({"model": "m", "messages": [], "max_completion_tokens": 1.5}, "max_completion_tokens"),
        ({"model": "m", "messages": [], "stream": "yes"}, "stream"),
        ({"model": "m", "messages": [{"role": "function", "name": "f", "content": "x"}]}, "messages[0].role"),
    ],
)
def test_decode_errors_name_the_field(body, param):
    assert bad(body).param == param


def test_decode_rejects_non_object_and_oversized_data_url(monkeypatch):
    bad(b"[1,2]")
    bad(b"{not json")
    from smolgate.protocols import common

    monkeypatch.setattr(common, "MAX_INLINE_BYTES", 10)
    e = bad(
        {
            "model": "m",
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "image_url", "image_url": {"url": "data:image/png;base64," + "A" * 100}}
                    ],
                }
            ],
        }
    )
    assert e.param == "messages[0].content[0].image_url.url" and "larger" in e.message


# ---------------------------------------------------------------- encode_response / stream encoder + SDK


RESP = Response(
    id="abc",
    model="gpt",
    created=1700000000,
    stop_reason=StopReason.TOOL_USE,
    content=[
        Reasoning(text="think"),
        Text(text="Hi "),
        Text(text="there"),
        ToolCall(id="call_1", name="get_weather", arguments='{"city":"Paris"}'),
    ],
    usage=Usage(input_tokens=10, output_tokens=5, cached_tokens=2, reasoning_tokens=1),
)


def test_encode_response_parsed_by_sdk():
    body = C.encode_response(RESP, dec({"model": "gpt", "messages": []}))
    raw = orjson.loads(body)
    assert raw["id"] == "chatcmpl-abc" and raw["choices"][0]["message"]["reasoning_content"] == "think"
    out = sdk(body).chat.completions.create(model="gpt", messages=[{"role": "user", "content": "x"}])
    assert out.id == "chatcmpl-abc" and out.object == "chat.completion" and out.created == 1700000000
    ch = out.choices[0]
    assert ch.finish_reason == "tool_calls" and ch.message.content == "Hi there"
    assert ch.message.tool_calls[0].function.name == "get_weather"
    assert json.loads(ch.message.tool_calls[0].function.arguments) == {"city": "Paris"}
    assert out.usage.prompt_tokens == 10 and out.usage.completion_tokens == 5 and out.usage.total_tokens == 15
    assert out.usage.prompt_tokens_details.cached_tokens == 2
    assert out.usage.completion_tokens_details.reasoning_tokens == 1


def tool_stream_events():
    return [
        MessageStart(id="chatcmpl-1", model="gpt", created=1700000000),
        BlockStart(index=0, block=Reasoning()),
        ReasoningDelta(index=0, text="hmm"),
        BlockStop(index=0),
        BlockStart(index=1, block=Text(text="")),
        TextDelta(index=1, text="Let me "),
        TextDelta(index=1, text="check."),
        BlockStop(index=1),
        BlockStart(index=2, block=ToolCall(id="call_a", name="get_weather", arguments="")),
        ToolArgsDelta(index=2, json='{"city":'),
        ToolArgsDelta(index=2, json='"Paris"}'),
        BlockStop(index=2),
        BlockStart(index=3, block=ToolCall(id="call_b", name="get_time", arguments="")),
        ToolArgsDelta(index=3, json="{}"),
        BlockStop(index=3),
        MessageDelta(stop_reason=StopReason.TOOL_USE, usage=Usage(input_tokens=7, output_tokens=9)),
        MessageStop(),
    ]


def encode_stream(events, include_usage=True) -> bytes:
    req = dec(
        {"model": "gpt", "messages": [], "stream": True, "stream_options": {"include_usage": include_usage}}
    )
    enc = C.stream_encoder(req)
    return b"".join(enc.feed(e) for e in events) + enc.close()


def test_stream_wire_shape():
    wire = encode_stream(tool_stream_events())
    frames = [f[6:] for f in wire.decode().split("\n\n") if f]
    assert frames[-1] == "[DONE]"
    chunks = [json.loads(f) for f in frames[:-1]]
    assert all(c["id"] == "chatcmpl-1" and c["object"] == "chat.completion.chunk" for c in chunks)
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    tc = [
        c["choices"][0]["delta"]["tool_calls"][0]
        for c in chunks
        if c["choices"] and "tool_calls" in c["choices"][0]["delta"]
    ]
    assert tc[0] == {
        "index": 0,
        "id": "call_a",
        "type": "function",
        "function": {"name": "get_weather", "arguments": ""},
    }
    assert tc[1] == {"index": 0, "function": {"arguments": '{"city":'}} and tc[3]["index"] == 1
    assert chunks[-2]["choices"][0]["finish_reason"] == "tool_calls"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["total_tokens"] == 16
    no_usage = encode_stream(tool_stream_events(), include_usage=False)
    assert b'"usage"' not in no_usage and no_usage.endswith(b"data: [DONE]\n\n")


def test_sdk_stream_with_tool_call_fragments():
    client = sdk(encode_stream(tool_stream_events()), stream=True)
    chunks = list(
        client.chat.completions.create(
            model="gpt", messages=[], stream=True, stream_options={"include_usage": True}
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Let me check."
    args: dict[int, str] = {}
    for c in chunks:
        for tc in (c.choices[0].delta.tool_calls or []) if c.choices else []:
            args[tc.index] = args.get(tc.index, "") + (tc.function.arguments or "")
    assert args == {0: '{"city":"Paris"}', 1: "{}"}
    assert chunks[-1].choices == [] and chunks[-1].usage.prompt_tokens == 7


def test_sdk_stream_accumulator():
    client = sdk(encode_stream(tool_stream_events()), stream=True)
    with client.chat.completions.stream(model="gpt", messages=[]) as s:
        for _ in s:
            pass
        final = s.get_final_completion()
    msg = final.choices[0].message
    assert msg.content == "Let me check." and final.choices[0].finish_reason == "tool_calls"
    assert [(t.id, t.function.name, t.function.arguments) for t in msg.tool_calls] == [
        ("call_a", "get_weather", '{"city":"Paris"}'),
        ("call_b", "get_time", "{}"),
    ]
    assert final.usage.total_tokens == 16


def test_stream_midstream_error_raises_in_sdk():
    events = [*tool_stream_events()[:6], StreamError(kind=ErrorKind.OVERLOADED, message="upstream fell over")]
    wire = encode_stream(events)
    assert b'data: {"error":{"message":"upstream fell over"' in wire
    client = sdk(wire, stream=True)
    with pytest.raises(openai.APIError, match="upstream fell over"):
        list(client.chat.completions.create(model="gpt", messages=[], stream=True))


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "err,exc,status",
    [
        (GatewayError(ErrorKind.INVALID_REQUEST, "bad n", param="n"), openai.BadRequestError, 400),
        (GatewayError(ErrorKind.AUTH, "no key"), openai.AuthenticationError, 401),
        (GatewayError(ErrorKind.NOT_FOUND, "no model"), openai.NotFoundError, 404),
        (GatewayError(ErrorKind.RATE_LIMITED, "slow down", retry_after=2.5), openai.RateLimitError, 429),
        (GatewayError(ErrorKind.INTERNAL, "oops"), openai.InternalServerError, 500),
    ],
)
def test_encode_error_shapes(err, exc, status):
    reply = C.encode_error(err)
    assert reply.status == status
    body = orjson.loads(reply.body)["error"]
    assert set(body) == {"message", "type", "param", "code"} and body["message"] == err.message
    if err.retry_after:
        assert reply.headers["retry-after"] == "3" and "x-should-retry" not in reply.headers
    if err.kind in (ErrorKind.INTERNAL, ErrorKind.INVALID_REQUEST):
        assert reply.headers["x-should-retry"] == "false"
    with pytest.raises(exc) as ei:
        sdk(reply.body, reply.status, reply.headers).chat.completions.create(model="m", messages=[])
    assert ei.value.body["message"] == err.message and err.message in ei.value.message
    assert ei.value.param == err.param and ei.value.code == err.kind.value


def test_decode_error_keeps_message_and_retry_after():
    e = C.decode_error(
        429, b'{"error":{"message":"Rate limit reached","type":"rate_limit_error"}}', {"Retry-After": "7"}
    )
    assert e.kind is ErrorKind.RATE_LIMITED and e.retry_after == 7 and e.message == "Rate limit reached"
    assert C.decode_error(503, b"", {"retry-after-ms": "1500"}).retry_after == 1.5
    e = C.decode_error(401, b'{"error":{"message":"Incorrect API key"}}', {})
    assert e.kind is ErrorKind.AUTH and e.status == 502 and e.upstream_status == 401
    e = C.decode_error(400, b'{"error":{"message":"bad","param":"messages[0]"}}', {})
    assert e.kind is ErrorKind.INVALID_REQUEST and e.param == "messages[0]"
    e = C.decode_error(502, b"<html>Bad gateway</html>", {"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"})
    assert e.kind is ErrorKind.UPSTREAM and "Bad gateway" in e.message and e.retry_after is None


# ---------------------------------------------------------------- upstream side


def test_encode_request_upstream():
    req = Request(
        model="alias",
        stream=True,
        system=[Text(text="be brief")],
        max_tokens=50,
        top_k=4,
        temperature=0.2,
        stop=["x"],
        reasoning=ReasoningConfig(budget_tokens=2048),
        metadata={"a": 1},
        messages=[
            Message(role="user", content=[Text(text="hi"), Image(data=PNG, media_type="image/png")]),
            Message(
                role="assistant",
                content=[Reasoning(text="r", signature="sig"), ToolCall(id="c1", name="f", arguments="{}")],
            ),
            Message(
                role="user",
                content=[
                    ToolResult(call_id="c1", content=[Text(text="res"), Image(url="https://x/y.png")]),
                    Text(text="and?"),
                ],
            ),
        ],
    )
    up = C.encode_request(req, "gpt-real")
    assert up.path == "/chat/completions" and up.stream
    b = orjson.loads(up.body)
    assert b["model"] == "gpt-real" and b["stream_options"] == {"include_usage": True}
    assert b["max_completion_tokens"] == 50 and "max_tokens" not in b and "top_k" not in b
    assert "metadata" not in b and b["reasoning_effort"] == "medium" and b["stop"] == ["x"]
    m = b["messages"]
    assert m[0] == {"role": "system", "content": "be brief"}
    assert m[1]["content"][1]["image_url"]["url"] == PNG_URL
    assert m[2] == {
        "role": "assistant",
        "content": None,
        "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}],
    }
    assert m[3] == {"role": "tool", "tool_call_id": "c1", "content": "res"}
    # the tool result's image follows in a user message with the turn's other content
    assert m[4]["role"] == "user" and m[4]["content"][0]["image_url"]["url"] == "https://x/y.png"
    assert m[4]["content"][1] == {"type": "text", "text": "and?"}


def test_decode_response_upstream():
    body = orjson.dumps(
        {
            "id": "chatcmpl-9",
            "object": "chat.completion",
            "created": 5,
            "model": "gpt",
            "choices": [
                {
                    "index": 0,
                    "finish_reason": "stop",
                    "message": {
                        "role": "assistant",
                        "content": "ok",
                        "reasoning": "why",
                        "tool_calls": [
                            {"id": "c", "type": "function", "function": {"name": "f", "arguments": '{"a":1}'}}
                        ],
                    },
                }
            ],
            "usage": {
                "prompt_tokens": 4,
                "completion_tokens": 2,
                "prompt_tokens_details": {"cached_tokens": 1},
            },
        }
    )
    r = C.decode_response(body)
    assert r.content == [
        Reasoning(text="why"),
        Text(text="ok"),
        ToolCall(id="c", name="f", arguments='{"a":1}'),
    ]
    assert r.stop_reason is StopReason.TOOL_USE  # "stop" with tool calls, as some servers send
    assert r.usage == Usage(input_tokens=4, output_tokens=2, cached_tokens=1) and r.created == 5
    for garbage in (b"nope", b"[]", b'{"choices":[]}', b'{"choices":[5]}'):
        with pytest.raises(GatewayError) as ei:
            C.decode_response(garbage)
        assert ei.value.kind is ErrorKind.UPSTREAM


UPSTREAM_STREAM = b"".join(
    [
        (
            b'data: {"id":"chatcmpl-7","object":"chat.completion.chunk","created":9,"model":"gpt","choices":'
            b'[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}],"usage":null}\n\n'
        ),
        b'data: {"id":"chatcmpl-7","choices":[{"index":0,"delta":{"reasoning_content":"Th\xc3\xa9"}}]}\n\n',
        b'data: {"id":"chatcmpl-7","choices":[{"index":0,"delta":{"content":"Hel"}}]}\r\n\r\n',
        b": keep-alive\n\n",
        b'data: {"id":"chatcmpl-7","choices":[{"index":0,"delta":{"content":"lo \xe2\x9c\x93"}}]}\n\n',
        (
            b'data: {"id":"chatcmpl-7","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_1",'
            b'"type":"function","function":{"name":"get_weather","arguments":""}}]}}]}\n\n'
        ),
        (
            b'data: {"id":"chatcmpl-7","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,'
            b'"function":{"arguments":"{\\"city\\":"}}]}}]}\n\n'
        ),
        (
            b'data: {"id":"chatcmpl-7","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,'
            b'"function":{"arguments":"\\"Paris\\"}"}}]}}]}\n\n'
        ),
        (
            b'data: {"id":"chatcmpl-7","choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"id":"call_2",'
            b'"type":"function","function":{"name":"noargs","arguments":""}}]}}]}\n\n'
        ),
        b'data: {"id":"chatcmpl-7","choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}\n\n',
        (
            b'data: {"id":"chatcmpl-7","choices":[],"usage":{"prompt_tokens":11,"completion_tokens":6,'
            b'"total_tokens":17,"completion_tokens_details":{"reasoning_tokens":2}}}\n\n'
        ),
        b"data: [DONE]\n\n",
    ]
)

EXPECTED = [
    MessageStart(id="chatcmpl-7", model="gpt", created=9),
    BlockStart(index=0, block=Reasoning(text="")),
    ReasoningDelta(index=0, text="Thé"),
    BlockStop(index=0),
    BlockStart(index=1, block=Text(text="")),
    TextDelta(index=1, text="Hel"),
    TextDelta(index=1, text="lo ✓"),
    BlockStop(index=1),
    BlockStart(index=2, block=ToolCall(id="call_1", name="get_weather", arguments="")),
    ToolArgsDelta(index=2, json='{"city":'),
    ToolArgsDelta(index=2, json='"Paris"}'),
    BlockStop(index=2),
    BlockStart(index=3, block=ToolCall(id="call_2", name="noargs", arguments="")),
    ToolArgsDelta(index=3, json="{}"),
    BlockStop(index=3),
    MessageDelta(
        stop_reason=StopReason.TOOL_USE, usage=Usage(input_tokens=11, output_tokens=6, reasoning_tokens=2)
    ),
    MessageStop(),
]


def merged(events):
    """Join adjacent deltas of the same block so differently-split feeds compare equal."""
    out = []
    for e in events:
        if (
            out
            and type(e) is type(out[-1])
            and isinstance(e, (TextDelta, ReasoningDelta, ToolArgsDelta))
            and e.index == out[-1].index
        ):
            if isinstance(e, ToolArgsDelta):
                out[-1] = ToolArgsDelta(index=e.index, json=out[-1].json + e.json)
            else:
                out[-1] = type(e)(index=e.index, text=out[-1].text + e.text)
        else:
            out.append(e)
    return out


def test_stream_decoder_whole_and_split_at_every_byte():
    d = C.stream_decoder()
    whole = d.feed(UPSTREAM_STREAM) + d.close()
    assert whole == EXPECTED
    d = C.stream_decoder()
    split = []
    for i in range(len(UPSTREAM_STREAM)):
        split += d.feed(UPSTREAM_STREAM[i : i + 1])
    split += d.close()
    assert split == EXPECTED


def test_stream_decoder_holds_message_delta_until_usage():
    d = C.stream_decoder()
    cut = UPSTREAM_STREAM.index(b'data: {"id":"chatcmpl-7","choices":[],"usage"')
    first = d.feed(UPSTREAM_STREAM[:cut])
    assert not any(isinstance(e, (MessageDelta, MessageStop)) for e in first)
    rest = d.feed(UPSTREAM_STREAM[cut:])
    assert isinstance(rest[-2], MessageDelta) and rest[-2].usage.input_tokens == 11


def test_stream_decoder_failures():
    d = C.stream_decoder()
    ev = d.feed(UPSTREAM_STREAM[:300]) + d.close()
    assert isinstance(ev[-1], StreamError) and ev[-1].kind is ErrorKind.UPSTREAM
    d = C.stream_decoder()
    ev = d.feed(
        b'data: {"id":"x","choices":[{"index":0,"delta":{"content":"a"}}]}\n\n'
        b'data: {"error":{"message":"boom","type":"rate_limit_error"}}\n\n'
    )
    assert ev[-1] == StreamError(kind=ErrorKind.RATE_LIMITED, message="boom")
    assert d.feed(b"data: [DONE]\n\n") == [] and d.close() == []
    d = C.stream_decoder()
    ev = d.feed(b"data: {oops\n\n")
    assert isinstance(ev[-1], StreamError)
    d = C.stream_decoder()
    assert isinstance((d.feed(b"") + d.close())[-1], StreamError)
    # finish_reason seen but the server closed without usage chunk or [DONE]: complete, no error
    d = C.stream_decoder()
    ev = d.feed(
        b'data: {"id":"x","choices":[{"index":0,"delta":{"content":"a"},"finish_reason":"length"}]}\n\n'
    )
    ev += d.close()
    assert (
        ev[-2] == MessageDelta(stop_reason=StopReason.MAX_TOKENS, usage=Usage()) and ev[-1] == MessageStop()
    )


def test_stream_round_trip_through_our_own_wire():
    """canonical events → chat SSE (client side) → chat stream decoder (upstream side) → same events."""
    d = C.stream_decoder()
    back = d.feed(encode_stream(tool_stream_events())) + d.close()
    assert merged(back) == merged(tool_stream_events())


def test_request_round_trip():
    body = {
        "model": "m",
        "messages": [
            {"role": "system", "content": "S"},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "a"},
                    {"type": "image_url", "image_url": {"url": PNG_URL}},
                ],
            },
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {"id": "c1", "type": "function", "function": {"name": "f", "arguments": '{"q":1}'}}
                ],
            },
            {"role": "tool", "tool_call_id": "c1", "content": "r"},
            {"role": "user", "content": "more"},
        ],
        "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
        "tool_choice": "auto",
        "parallel_tool_calls": True,
        "max_completion_tokens": 10,
        "temperature": 0.3,
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "n", "schema": {}, "strict": True},
        },
    }
    canon = dec(body)
    wire = orjson.loads(C.encode_request(canon, "m").body)
    for key in (
        "messages",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "max_completion_tokens",
        "temperature",
        "response_format",
    ):
        assert wire[key] == body[key], key
    assert dec(wire) == canon


def test_models_bodies_parse_in_sdk():
    models = [ModelInfo(id="a", created=1), ModelInfo(id="b", owned_by="me")]
    page = sdk(encode_models(models)).models.list()
    assert [(m.id, m.owned_by, m.object) for m in page.data] == [
        ("a", "smolgate", "model"),
        ("b", "me", "model"),
    ]
    one = sdk(encode_model(models[0])).models.retrieve("a")
    assert one.id == "a" and one.created == 1


# ---------------------------------------------------------------- fuzz


VALID = {
    "model": "m",
    "stream": True,
    "messages": [
        {"role": "system", "content": "S"},
        {
            "role": "user",
            "content": [{"type": "text", "text": "a"}, {"type": "image_url", "image_url": {"url": PNG_URL}}],
        },
        {
            "role": "assistant",
            "content": "x",
            "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}],
        },
        {"role": "tool", "tool_call_id": "c", "content": "r"},
    ],
    "tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}],
    "tool_choice": "auto",
    "response_format": {"type": "json_schema", "json_schema": {"name": "n"}},
    "stop": ["s"],
    "n": 1,
}


def _check(body: bytes):
    assert_request_or_4xx(C, body, CTX)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(json_values(), st.dictionaries(st.sampled_from(list(VALID)), json_values())))
def test_fuzz_random_json(value):
    _check(orjson.dumps(value))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.integers(0, 20), max_size=6), json_values())
def test_fuzz_mutated_valid_request(path, value):
    _check(orjson.dumps(mutate(VALID, path, value)))


# ---------------------------------------------------------------- the fake upstream, checked with the SDK


@pytest.fixture(scope="module")
def fake():
    f = OpenAIUpstream(api_key="sk-fake").start()
    yield f
    f.stop()


def real(fake, key="sk-fake") -> openai.OpenAI:
    return openai.OpenAI(api_key=key, base_url=fake.base_url, max_retries=0)


def test_fake_chat_non_stream_and_stream(fake):
    c = real(fake)
    out = c.chat.completions.create(
        model="gpt-fake",
        messages=[{"role": "system", "content": "sys"}, {"role": "user", "content": "hello"}],
    )
    assert out.choices[0].message.content == "You said: hello | system=sys images=0 turns=1"
    assert fake.last.headers["authorization"] == "Bearer sk-fake"
    chunks = list(
        c.chat.completions.create(
            model="gpt-fake",
            messages=[{"role": "user", "content": "hello"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices).startswith(
        "You said: hello"
    )
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens > 0
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
    with c.chat.completions.stream(
        model="gpt-fake", tools=tools, messages=[{"role": "user", "content": "weather?"}]
    ) as s:
        final = s.get_final_completion()
    call = final.choices[0].message.tool_calls[0]
    assert call.function.name == "get_weather" and json.loads(call.function.arguments) == {"city": "Paris"}
    models = c.models.list()
    assert [m.id for m in models.data] == ["gpt-fake", "gpt-fake-mini"]


def test_fake_errors(fake):
    with pytest.raises(openai.AuthenticationError) as ei:
        real(fake, "sk-wrong").chat.completions.create(model="gpt-fake", messages=[])
    assert ei.value.code == "invalid_api_key"
    with pytest.raises(openai.RateLimitError) as ei:
        real(fake).chat.completions.create(
            model="gpt-fake", messages=[{"role": "user", "content": "FAIL_STATUS_429"}]
        )
    assert ei.value.response.headers["retry-after"] == "1"
    with pytest.raises(openai.APIError, match="mid-stream"):
        list(
            real(fake).chat.completions.create(
                model="gpt-fake", stream=True, messages=[{"role": "user", "content": "FAIL_MIDSTREAM now ok"}]
            )
        )


def _call(fake, up):
    """Send an encoded upstream request to the fake the way the provider would."""
    r = httpx.post(
        fake.base_url + up.path,
        content=up.body,
        headers={**up.headers, "authorization": "Bearer sk-fake"},
        timeout=10,
    )
    return r


def test_codec_against_fake_upstream(fake):
    req = dec(
        {
            "model": "alias",
            "messages": [{"role": "user", "content": "weather please"}],
            "tools": [{"type": "function", "function": {"name": "get_weather"}}],
            "stream": True,
        }
    )
    r = _call(fake, C.encode_request(req, "gpt-fake"))
    d = C.stream_decoder()
    events = d.feed(r.content) + d.close()
    assert fake.last.json["stream_options"] == {"include_usage": True}
    calls = [e.block for e in events if isinstance(e, BlockStart)]
    assert calls[0].name == "get_weather"
    assert "".join(e.json for e in events if isinstance(e, ToolArgsDelta)) == '{"city": "Paris"}'
    assert events[-2].stop_reason is StopReason.TOOL_USE and events[-2].usage.output_tokens == 5
    # tool result goes back; non-streaming answer decodes
    req2 = dec(
        {
            "model": "alias",
            "messages": [
                {"role": "user", "content": "weather please"},
                {
                    "role": "assistant",
                    "tool_calls": [
                        {
                            "id": "call_fake1",
                            "type": "function",
                            "function": {"name": "get_weather", "arguments": "{}"},
                        }
                    ],
                },
                {"role": "tool", "tool_call_id": "call_fake1", "content": "sunny"},
            ],
            "max_tokens": 3,
        }
    )
    resp = C.decode_response(_call(fake, C.encode_request(req2, "gpt-fake")).content)
    assert resp.content == [Text(text="The tool said:")] and resp.stop_reason is StopReason.MAX_TOKENS
    r = _call(
        fake,
        C.encode_request(
            dec({"model": "m", "messages": [{"role": "user", "content": "FAIL_STATUS_503"}]}), "x"
        ),
    )
    e = C.decode_error(r.status_code, r.content, r.headers)
    assert e.kind is ErrorKind.OVERLOADED and "scripted failure 503" in e.message
    r = _call(
        fake,
        C.encode_request(
            dec(
                {
                    "model": "m",
                    "stream": True,
                    "messages": [{"role": "user", "content": "FAIL_MIDSTREAM x y z"}],
                }
            ),
            "x",
        ),
    )
    d = C.stream_decoder()
    events = d.feed(r.content) + d.close()
    assert isinstance(events[-1], StreamError) and "mid-stream" in events[-1].message


def test_fake_slow_streams_incrementally(fake):
    import time

    t0 = time.monotonic()
    stream = real(fake).chat.completions.create(
        model="gpt-fake", stream=True, messages=[{"role": "user", "content": "SLOW please"}]
    )
    first_text_at, text = None, ""
    for ch in stream:
        piece = ch.choices[0].delta.content if ch.choices else None
        if piece and first_text_at is None:
            first_text_at = time.monotonic() - t0
        text += piece or ""
    total = time.monotonic() - t0
    assert text == "one two three four five six seven eight"
    assert first_text_at < 0.6 and total > 1.5


STREAM_FRAMES = [
    f[6:] if f.startswith("data: [DONE]") else json.loads(f[6:])
    for f in UPSTREAM_STREAM.decode().replace("\r\n", "\n").split("\n\n")
    if f.startswith("data: ")
]
STREAM_FRAMES = ["[DONE]" if f == "[DONE]" else f for f in STREAM_FRAMES]


# ---------------------------------------------------------------- stream decoder fuzz


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(
            st.integers(0, len(STREAM_FRAMES) - 1),
            st.lists(st.integers(0, 20), max_size=5),
            json_values(),
            st.booleans(),
        ),
        max_size=8,
    ),
    st.integers(1, 50),
)
def test_fuzz_stream_decoder(edits, step):
    frames = list(STREAM_FRAMES)
    for i, path, value, replace in edits:
        if replace:
            frames[i] = mutate(frames[i], path, value)
        else:
            frames.insert(i, value)
    wire = b"".join(b"data: " + (b"[DONE]" if f == "[DONE]" else orjson.dumps(f)) + b"\n\n" for f in frames)
    assert_stream_guarantees(decode_in_steps(C.stream_decoder(), wire, step))


def test_stream_decoder_accepts_data_without_space_and_missing_index():
    d = C.stream_decoder()
    ev = d.feed(
        b'data:{"id":"x","choices":[{"index":0,"delta":{"tool_calls":[{"id":"c9","function":'
        b'{"name":"f","arguments":"{}"}}]}}]}\n\ndata:{"id":"x","choices":[{"index":0,"delta":{},'
        b'"finish_reason":"stop"}]}\n\ndata:[DONE]\n\n'
    )
    assert ev[1] == BlockStart(index=0, block=ToolCall(id="c9", name="f", arguments=""))
    assert ev[2] == ToolArgsDelta(index=0, json="{}")
    assert ev[-2].stop_reason is StopReason.TOOL_USE and ev[-1] == MessageStop()
