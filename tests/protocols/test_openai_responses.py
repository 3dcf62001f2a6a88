"""OpenAI Responses codec: both sides, the streaming event sequence, errors, §8 gotchas, SDK parses, fuzz."""

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
from smolgate.protocols.base import RequestContext
from smolgate.protocols.openai_responses import OpenAIResponsesCodec
from tests.fakes.openai_upstream import OpenAIUpstream
from tests.protocols.fuzz import (
    assert_request_or_4xx,
    assert_stream_guarantees,
    decode_in_steps,
    json_values,
    mutate,
)

C = OpenAIResponsesCodec()
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


def sdk(body: bytes, status: int = 200, headers: dict | None = None, stream: bool = False) -> openai.OpenAI:
    def handler(request: httpx.Request) -> httpx.Response:
        h = {"content-type": "text/event-stream" if stream else "application/json", **(headers or {})}
        return httpx.Response(status, content=body, headers=h)

    return openai.OpenAI(
        api_key="sk-x",
        base_url="http://gw/v1",
        max_retries=0,
        http_client=httpx.Client(transport=httpx.MockTransport(handler)),
    )


# ---------------------------------------------------------------- decode_request


def test_decode_string_input_and_instructions():
    r = dec(
        {
            "model": "m",
            "input": "hello",
            "instructions": "be nice",
            "max_output_tokens": 20,
            "temperature": 0.1,
            "top_p": 0.9,
            "top_k": 5,
            "stream": True,
            "store": True,
            "reasoning": {"effort": "high", "summary": "auto"},
            "metadata": {"a": "b"},
            "include": ["x"],
        }
    )
    assert r.messages == [Message(role="user", content=[Text(text="hello")])]
    assert r.system == [Text(text="be nice")] and r.max_tokens == 20 and r.temperature == 0.1
    assert r.top_p == 0.9 and r.top_k == 5 and r.stream and r.metadata == {"a": "b"}
    assert r.reasoning == ReasoningConfig(enabled=True, effort="high", include_thoughts=True)


def test_decode_items():
    r = dec(
        {
            "model": "m",
            "input": [
                {"role": "developer", "content": "dev rules"},
                {
                    "type": "message",
                    "role": "user",
                    "content": [
                        {"type": "input_text", "text": "see"},
                        {"type": "input_image", "image_url": PNG_URL, "detail": "high"},
                        {"type": "input_image", "image_url": "https://x/a.png", "detail": "auto"},
                    ],
                },
                {
                    "type": "reasoning",
                    "id": "rs_1",
                    "summary": [
                        {"type": "summary_text", "text": "p1"},
                        {"type": "summary_text", "text": "p2"},
                    ],
                    "encrypted_content": "ENC",
                },
                {
                    "type": "message",
                    "role": "assistant",
                    "content": [{"type": "output_text", "text": "ok", "annotations": []}],
                },
                {
                    "type": "function_call",
                    "id": "fc_1",
                    "call_id": "call_1",
                    "name": "f",
                    "arguments": '{"a":1}',
                },
                {"type": "function_call", "call_id": "call_2", "name": "g", "arguments": "{}"},
                {"type": "function_call_output", "call_id": "call_1", "output": "r1"},
                {
                    "type": "function_call_output",
                    "call_id": "call_2",
                    "output": [{"type": "input_text", "text": "r2"}],
                },
                {"role": "user", "content": "next"},
            ],
            "tools": [
                {
                    "type": "function",
                    "name": "f",
                    "description": "F",
                    "parameters": {"type": "object"},
                    "strict": True,
                },
                {"type": "function", "name": "g"},
            ],
            "tool_choice": {"type": "function", "name": "g"},
            "parallel_tool_calls": False,
            "text": {
                "format": {"type": "json_schema", "name": "out", "schema": {"type": "object"}, "strict": True}
            },
        }
    )
    assert r.system == [Text(text="dev rules")]
    assert [m.role for m in r.messages] == ["user", "assistant", "user", "user"]
    assert r.messages[0].content == [
        Text(text="see"),
        Image(data=PNG, media_type="image/png", detail="high"),
        Image(url="https://x/a.png", detail="auto"),
    ]
    assert r.messages[1].content == [
        Reasoning(text="p1\n\np2", redacted="ENC"),
        Text(text="ok"),
        ToolCall(id="call_1", name="f", arguments='{"a":1}'),
        ToolCall(id="call_2", name="g", arguments="{}"),
    ]
    assert r.messages[2].content == [
        ToolResult(call_id="call_1", content=[Text(text="r1")], name="f"),
        ToolResult(call_id="call_2", content=[Text(text="r2")], name="g"),
    ]
    assert r.tools == [
        Tool(name="f", description="F", parameters={"type": "object"}, raw={"strict": True}),
        Tool(name="g"),
    ]
    assert r.tool_choice == ToolChoice(mode="tool", name="g", parallel=False)
    assert r.response_format.type == "json_schema" and r.response_format.name == "out"
    assert r.response_format.schema == {"type": "object"} and r.response_format.strict
    assert (
        dec({"model": "m", "input": "x", "text": {"format": {"type": "json_object"}}}).response_format.type
        == "json_object"
    )
    assert dec({"model": "m", "input": "x", "tool_choice": "required"}).tool_choice.mode == "required"


@pytest.mark.parametrize(
    "body,param",
    [
        ({"input": "x"}, "model"),
        ({"model": "m"}, "input"),
        ({"model": "m", "input": 5}, "input"),
        ({"model": "m", "input": "x", "previous_response_id": "resp_1"}, "previous_response_id"),
        ({"model": "m", "input": "x", "conversation": "conv_1"}, "conversation"),
        ({"model": "m", "input": [{"type": "item_reference", "id": "msg_1"}]}, "input[0].id"),
        ({"model": "m", "input": [{"type": "no_such_item"}]}, "input[0].type"),
        ({"model": "m", "input": [7]}, "input[0]"),
        ({"model": "m", "input": [{"role": "user"}]}, "input[0].content"),
        ({"model": "m", "input": [{"role": "robot", "content": "x"}]}, "input[0].role"),
        (
            {"model": "m", "input": [{"role": "user", "content": [{"type": "input_file", "file_id": "f"}]}]},
            "input[0].content[0].type",
        ),
        (
            {"model": "m", "input": [{"role": "user", "content": [{"type": "input_image", "file_id": "f"}]}]},
            "input[0].content[0].image_url",
        ),
        (
            {
                "model": "m",
                "input": [{"role": "user", "content": [{"type": "input_image", "image_url": "file:/x"}]}],
            },
            "input[0].content[0].image_url",
        ),
        ({"model": "m", "input": [{"type": "function_call", "name": "f"}]}, "input[0].call_id"),
        (
            {
                "model": "m",
                "input": [{"type": "function_call", "call_id": "c", "name": "f", "arguments": {}}],
            },
            "input[0].arguments",
        ),
        ({"model": "m", "input": [{"type": "function_call_output", "call_id": "c"}]}, "input[0].output"),
        ({"model": "m", "input": "x", "tools": [{"type": "Web Search"}]}, "tools[0].type"),
        (
            {
                "model": "m",
                "input": "x",
                "tools": [
                    {"type": "namespace", "name": "n", "description": "", "tools": [{"type": "web_search"}]}
                ],
            },
            "tools[0].tools[0].type",
        ),
        (
            {"model": "m", "input": "x", "tools": [{"type": "function", "function": {"name": "f"}}]},
            "tools[0].name",
        ),
        ({"model": "m", "input": "x", "tool_choice": {"type": "file search!"}}, "tool_choice.type"),
        (
            {"model": "m", "input": "x", "text": {"format": {"type": "json_schema", "schema": {}}}},
            "text.format.name",
        ),
        ({"model": "m", "input": "x", "max_output_tokens": "9"}, "max_output_tokens"),
        ({"model": "m", "input": "x", "reasoning": {"effort": 3}}, "reasoning.effort"),
    ],
)
def test_decode_errors_name_the_field(body, param):
    assert bad(body).param == param


def test_stateful_fields_get_a_clear_message():
    e = bad({"model": "m", "input": "x", "previous_response_id": "resp_1"})
    assert "response store" in e.message


# ---------------------------------------------------------------- encode_response + SDK


REQ = dec(
    {
        "model": "gpt",
        "input": "hi",
        "instructions": "sys",
        "max_output_tokens": 64,
        "include": ["reasoning.encrypted_content"],
        "tools": [{"type": "function", "name": "get_weather", "parameters": {"type": "object"}}],
    }
)
REQ_PLAIN = dec({"model": "gpt", "input": "hi", "tools": [{"type": "function", "name": "get_weather"}]})
RESP = Response(
    id="abc",
    model="gpt",
    created=1700000000,
    stop_reason=StopReason.TOOL_USE,
    content=[
        Reasoning(text="think", redacted="ENC"),
        Text(text="Hi "),
        Text(text="there"),
        ToolCall(id="call_1", name="get_weather", arguments='{"city":"Paris"}'),
    ],
    usage=Usage(input_tokens=10, output_tokens=5, cached_tokens=3, reasoning_tokens=2),
)


def test_encode_response_parsed_by_sdk():
    out = sdk(C.encode_response(RESP, REQ)).responses.create(model="gpt", input="hi")
    assert out.id == "resp_abc" and out.status == "completed" and out.instructions == "sys"
    assert out.output_text == "Hi there"
    types = [o.type for o in out.output]
    assert types == ["reasoning", "message", "function_call"]
    assert out.output[0].summary[0].text == "think" and out.output[0].encrypted_content == "ENC"
    fc = out.output[2]
    assert (
        fc.call_id == "call_1" and fc.name == "get_weather" and json.loads(fc.arguments) == {"city": "Paris"}
    )
    assert (
        out.output[1].id.startswith("msg_") and fc.id.startswith("fc_") and out.output[0].id.startswith("rs_")
    )
    u = out.usage
    assert (u.input_tokens, u.output_tokens, u.total_tokens) == (10, 5, 15)
    assert u.input_tokens_details.cached_tokens == 3 and u.output_tokens_details.reasoning_tokens == 2
    assert out.tools[0].name == "get_weather" and out.max_output_tokens == 64


def test_incomplete_status():
    resp = Response(id="resp_1", model="m", content=[Text(text="trunc")], stop_reason=StopReason.MAX_TOKENS)
    out = sdk(C.encode_response(resp, REQ)).responses.create(model="m", input="x")
    assert out.status == "incomplete" and out.incomplete_details.reason == "max_output_tokens"
    assert out.id == "resp_1"


def events_text_tool():
    return [
        MessageStart(id="resp_s1", model="gpt", created=1700000000),
        BlockStart(index=0, block=Reasoning()),
        ReasoningDelta(index=0, text="plan"),
        SignatureDelta(index=0, signature="sig"),
        BlockStop(index=0),
        BlockStart(index=1, block=Text(text="")),
        TextDelta(index=1, text="Hel"),
        TextDelta(index=1, text="lo"),
        BlockStop(index=1),
        BlockStart(index=2, block=ToolCall(id="call_a", name="get_weather", arguments="")),
        ToolArgsDelta(index=2, json='{"city":'),
        ToolArgsDelta(index=2, json='"Paris"}'),
        BlockStop(index=2),
        MessageDelta(stop_reason=StopReason.TOOL_USE, usage=Usage(input_tokens=4, output_tokens=6)),
        MessageStop(),
    ]


def encode_stream(events, req: Request = REQ) -> bytes:
    enc = C.stream_encoder(req)
    return b"".join(enc.feed(e) for e in events) + enc.close()


def parse_sse(wire: bytes) -> list[tuple[str, dict]]:
    out = []
    for frame in wire.decode().split("\n\n"):
        if frame:
            ev, data = frame.split("\n")
            out.append((ev[len("event: ") :], json.loads(data[len("data: ") :])))
    return out


def test_stream_event_sequence():
    frames = parse_sse(encode_stream(events_text_tool()))
    assert all(ev == d["type"] for ev, d in frames)  # event: line matches data.type
    assert [d["sequence_number"] for _, d in frames] == list(range(len(frames)))
    types = [ev for ev, _ in frames]
    assert types == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.reasoning_summary_part.added",
        "response.reasoning_summary_text.delta",
        "response.reasoning_summary_text.done",
        "response.reasoning_summary_part.done",
        "response.output_item.done",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.completed",
    ]
    created = frames[0][1]["response"]
    assert created["status"] == "in_progress" and created["output"] == [] and created["id"] == "resp_s1"
    text_ids = {
        d["item_id"] for ev, d in frames if ev.startswith(("response.output_text", "response.content_part"))
    }
    added = [d for ev, d in frames if ev == "response.output_item.added"]
    assert text_ids == {added[1]["item"]["id"]} and [a["output_index"] for a in added] == [0, 1, 2]
    done = frames[-1][1]["response"]
    assert done["status"] == "completed" and done["usage"]["total_tokens"] == 10
    assert [o["type"] for o in done["output"]] == ["reasoning", "message", "function_call"]
    assert done["output"][2]["arguments"] == '{"city":"Paris"}' and b"[DONE]" not in encode_stream(
        events_text_tool()
    )


def test_sdk_stream_final_response():
    client = sdk(encode_stream(events_text_tool()), stream=True)
    deltas = []
    with client.responses.stream(model="gpt", input="hi") as s:
        for ev in s:
            if ev.type == "response.output_text.delta":
                deltas.append(ev.delta)
        final = s.get_final_response()
    assert "".join(deltas) == "Hello" == final.output_text
    assert final.output[2].arguments == '{"city":"Paris"}' and final.output[2].call_id == "call_a"
    assert final.output[0].summary[0].text == "plan" and final.usage.output_tokens == 6
    events = list(
        sdk(encode_stream(events_text_tool()), stream=True).responses.create(
            model="gpt", input="hi", stream=True
        )
    )
    assert events[-1].type == "response.completed"


def test_stream_incomplete_and_failed():
    ev = [
        MessageStart(id="r", model="m"),
        BlockStart(index=0, block=Text(text="")),
        TextDelta(index=0, text="abc"),
        BlockStop(index=0),
        MessageDelta(stop_reason=StopReason.MAX_TOKENS, usage=Usage(output_tokens=3)),
        MessageStop(),
    ]
    frames = parse_sse(encode_stream(ev))
    assert frames[-1][0] == "response.incomplete"
    assert frames[-1][1]["response"]["incomplete_details"] == {"reason": "max_output_tokens"}
    failed = [*ev[:3], StreamError(kind=ErrorKind.RATE_LIMITED, message="too fast")]
    wire = encode_stream(failed)
    frames = parse_sse(wire)
    assert [f[0] for f in frames[-2:]] == ["error", "response.failed"]
    assert (
        frames[-2][1]["message"] == "too fast"
        and frames[-1][1]["response"]["error"]["code"] == "rate_limited"
    )
    events = list(sdk(wire, stream=True).responses.create(model="m", input="x", stream=True))
    assert events[-2].type == "error" and events[-1].type == "response.failed"
    assert events[-1].response.status == "failed"


def test_error_before_start_still_well_formed():
    frames = parse_sse(encode_stream([StreamError(kind=ErrorKind.UPSTREAM, message="down")]))
    assert [f[0] for f in frames] == ["response.created", "response.in_progress", "error", "response.failed"]


# ---------------------------------------------------------------- errors


def test_encode_error_through_sdk():
    reply = C.encode_error(GatewayError(ErrorKind.INVALID_REQUEST, "no store", param="previous_response_id"))
    with pytest.raises(openai.BadRequestError) as ei:
        sdk(reply.body, reply.status, reply.headers).responses.create(model="m", input="x")
    assert ei.value.param == "previous_response_id" and reply.headers["x-should-retry"] == "false"
    reply = C.encode_error(GatewayError(ErrorKind.OVERLOADED, "busy", retry_after=1))
    assert reply.status == 503 and reply.headers["retry-after"] == "1"


def test_decode_error():
    e = C.decode_error(429, b'{"error":{"message":"slow"}}', {"retry-after": "2"})
    assert e.kind is ErrorKind.RATE_LIMITED and e.retry_after == 2 and e.message == "slow"


# ---------------------------------------------------------------- upstream side


def test_encode_request_upstream():
    req = Request(
        model="alias",
        system=[Text(text="sys")],
        max_tokens=30,
        stream=True,
        top_k=3,
        stop=["x"],
        tools=[Tool(name="f", description="F")],
        tool_choice=ToolChoice(mode="tool", name="f"),
        reasoning=ReasoningConfig(effort="low", include_thoughts=True),
        messages=[
            Message(role="user", content=[Text(text="hi"), Image(data=PNG, media_type="image/png")]),
            Message(
                role="assistant",
                content=[
                    Reasoning(text="secret"),
                    Reasoning(text="s", redacted="ENC"),
                    Text(text="calling"),
                    ToolCall(id="c1", name="f", arguments="{}"),
                ],
            ),
            Message(
                role="user", content=[ToolResult(call_id="c1", content=[Text(text="res")]), Text(text="more")]
            ),
        ],
    )
    up = C.encode_request(req, "gpt-real")
    assert up.path == "/responses" and up.stream
    b = orjson.loads(up.body)
    assert b["model"] == "gpt-real" and b["instructions"] == "sys" and b["max_output_tokens"] == 30
    assert b["store"] is False and "top_k" not in b and "stop" not in b and b["stream"] is True
    assert b["tools"] == [
        {
            "type": "function",
            "name": "f",
            "parameters": {"type": "object", "properties": {}},
            "strict": False,
            "description": "F",
        }
    ]
    assert b["tool_choice"] == {"type": "function", "name": "f"}
    assert b["reasoning"] == {"effort": "low", "summary": "auto"}
    items = b["input"]
    assert items[0] == {
        "type": "message",
        "role": "user",
        "content": [
            {"type": "input_text", "text": "hi"},
            {"type": "input_image", "image_url": PNG_URL, "detail": "auto"},
        ],
    }
    assert (
        items[1]["type"] == "reasoning" and items[1]["encrypted_content"] == "ENC"
    )  # unencrypted one dropped
    assert items[2] == {
        "type": "message",
        "role": "assistant",
        "content": [{"type": "output_text", "text": "calling", "annotations": []}],
    }
    assert items[3] == {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"}
    assert items[4] == {"type": "function_call_output", "call_id": "c1", "output": "res"}
    assert items[5] == {
        "type": "message",
        "role": "user",
        "content": [{"type": "input_text", "text": "more"}],
    }
    with pytest.raises(GatewayError):
        C.encode_request(
            Request(model="m", messages=[Message(role="user", content=[Video(url="http://v")])]), "m"
        )


def test_decode_response_upstream():
    body = orjson.dumps(
        {
            "id": "resp_1",
            "object": "response",
            "created_at": 3,
            "status": "completed",
            "model": "gpt",
            "output": [
                {
                    "type": "reasoning",
                    "id": "rs",
                    "summary": [{"type": "summary_text", "text": "t"}],
                    "encrypted_content": "E",
                },
                {
                    "type": "message",
                    "id": "m",
                    "role": "assistant",
                    "content": [{"type": "output_text", "text": "hi", "annotations": []}],
                },
                {"type": "function_call", "id": "fc", "call_id": "c", "name": "f", "arguments": "{}"},
            ],
            "usage": {"input_tokens": 5, "output_tokens": 2, "input_tokens_details": {"cached_tokens": 1}},
        }
    )
    r = C.decode_response(body)
    assert r.content == [Reasoning(text="t", redacted="E"), Text(text="hi"), ToolCall(id="c", name="f")]
    assert r.stop_reason is StopReason.TOOL_USE and r.usage == Usage(
        input_tokens=5, output_tokens=2, cached_tokens=1
    )
    inc = orjson.dumps(
        {"id": "r", "status": "incomplete", "incomplete_details": {"reason": "content_filter"}, "output": []}
    )
    assert C.decode_response(inc).stop_reason is StopReason.CONTENT_FILTER
    with pytest.raises(GatewayError) as ei:
        C.decode_response(b'{"status":"failed","error":{"code":"server_error","message":"bad"},"output":[]}')
    assert ei.value.message == "bad"
    with pytest.raises(GatewayError) as ei:
        C.decode_response(b"[1]")
    assert ei.value.kind is ErrorKind.UPSTREAM


def test_stream_round_trip_split_at_every_byte():
    """canonical → Responses SSE (our encoder) → our decoder, whole and one byte at a time."""
    wire = encode_stream(events_text_tool(), REQ_PLAIN)  # signed reasoning not packed: nothing to unpack
    expected = [e for e in events_text_tool() if not isinstance(e, SignatureDelta)]
    d = C.stream_decoder()
    whole = d.feed(wire) + d.close()
    assert whole == expected
    d = C.stream_decoder()
    split = []
    for i in range(len(wire)):
        split += d.feed(wire[i : i + 1])
    assert split + d.close() == expected


def test_stream_decoder_errors_and_truncation():
    wire = encode_stream(events_text_tool())
    d = C.stream_decoder()
    ev = d.feed(wire[: len(wire) // 2]) + d.close()
    assert isinstance(ev[-1], StreamError) and ev[-1].kind is ErrorKind.UPSTREAM
    failed = encode_stream([*events_text_tool()[:7], StreamError(kind=ErrorKind.OVERLOADED, message="busy")])
    d = C.stream_decoder()
    ev = d.feed(failed) + d.close()
    assert ev[-1] == StreamError(kind=ErrorKind.OVERLOADED, message="busy")
    assert sum(isinstance(e, StreamError) for e in ev) == 1
    d = C.stream_decoder()
    ev = d.feed(
        b'event: response.failed\ndata: {"type":"response.failed","response":{"error":'
        b'{"code":"rate_limit_exceeded","message":"quota"}}}\n\n'
    )
    assert ev[-1] == StreamError(kind=ErrorKind.RATE_LIMITED, message="quota")


def test_request_round_trip():
    body = {
        "model": "m",
        "instructions": "sys",
        "input": [
            {
                "type": "message",
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "a"},
                    {"type": "input_image", "image_url": PNG_URL, "detail": "auto"},
                ],
            },
            {"type": "function_call", "call_id": "c1", "name": "f", "arguments": '{"q":1}'},
            {"type": "function_call_output", "call_id": "c1", "output": "r"},
        ],
        "tools": [{"type": "function", "name": "f", "parameters": {"type": "object"}, "strict": False}],
        "tool_choice": "auto",
        "max_output_tokens": 10,
        "temperature": 0.3,
        "store": False,
        "text": {"format": {"type": "json_schema", "name": "n", "schema": {}, "strict": True}},
    }
    canon = dec(body)
    wire = orjson.loads(C.encode_request(canon, "m").body)
    for key in ("instructions", "input", "tools", "tool_choice", "max_output_tokens", "temperature", "text"):
        assert wire[key] == body[key], key
    assert dec(wire) == canon


# ---------------------------------------------------------------- fuzz


VALID = {
    "model": "m",
    "instructions": "s",
    "stream": True,
    "input": [
        {
            "role": "user",
            "content": [{"type": "input_text", "text": "a"}, {"type": "input_image", "image_url": PNG_URL}],
        },
        {"type": "reasoning", "summary": [{"type": "summary_text", "text": "t"}]},
        {"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c", "output": "r"},
    ],
    "tools": [{"type": "function", "name": "f", "parameters": {}}],
    "tool_choice": {"type": "function", "name": "f"},
    "text": {"format": {"type": "json_schema", "name": "n", "schema": {}}},
    "reasoning": {"effort": "low"},
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


def test_fake_responses_with_sdk(fake):
    c = real(fake)
    out = c.responses.create(model="gpt-fake", input="hello", instructions="sys")
    assert out.output_text == "You said: hello | system=sys images=0 turns=1" and out.status == "completed"
    with c.responses.stream(model="gpt-fake", input="hello there") as s:
        final = s.get_final_response()
    assert final.output_text.startswith("You said: hello there") and final.usage.output_tokens > 0
    tools = [{"type": "function", "name": "get_weather", "parameters": {"type": "object"}}]
    with c.responses.stream(model="gpt-fake", input="weather?", tools=tools) as s:
        final = s.get_final_response()
    assert final.output[0].type == "function_call" and json.loads(final.output[0].arguments) == {
        "city": "Paris"
    }
    out = c.responses.create(model="gpt-fake", max_output_tokens=2, input="one two three four")
    assert out.status == "incomplete" and out.incomplete_details.reason == "max_output_tokens"


def test_fake_responses_errors(fake):
    with pytest.raises(openai.AuthenticationError):
        real(fake, "sk-nope").responses.create(model="gpt-fake", input="x")
    with pytest.raises(openai.InternalServerError):
        real(fake).responses.create(model="gpt-fake", input="FAIL_STATUS_500")
    events = list(real(fake).responses.create(model="gpt-fake", input="FAIL_MIDSTREAM a b c", stream=True))
    assert [e.type for e in events[-2:]] == ["error", "response.failed"]


def test_codec_against_fake_upstream(fake):
    def call(up):
        return httpx.post(
            fake.base_url + up.path,
            content=up.body,
            headers={**up.headers, "authorization": "Bearer sk-fake"},
            timeout=10,
        )

    req = dec(
        {
            "model": "alias",
            "input": "weather now",
            "stream": True,
            "tools": [{"type": "function", "name": "get_weather"}],
        }
    )
    d = C.stream_decoder()
    events = d.feed(call(C.encode_request(req, "gpt-fake")).content) + d.close()
    assert isinstance(events[0], MessageStart) and events[1].block.name == "get_weather"
    assert events[1].block.id == "call_fake1"
    assert "".join(e.json for e in events if isinstance(e, ToolArgsDelta)) == '{"city": "Paris"}'
    assert events[-2].stop_reason is StopReason.TOOL_USE and events[-1] == MessageStop()
    req2 = dec(
        {
            "model": "alias",
            "input": [
                {"role": "user", "content": "weather now"},
                {"type": "function_call", "call_id": "call_fake1", "name": "get_weather", "arguments": "{}"},
                {"type": "function_call_output", "call_id": "call_fake1", "output": "rainy"},
            ],
        }
    )
    resp = C.decode_response(call(C.encode_request(req2, "gpt-fake")).content)
    assert resp.content == [Text(text="The tool said: rainy")] and resp.stop_reason is StopReason.END_TURN
    d = C.stream_decoder()
    events = (
        d.feed(
            call(
                C.encode_request(dec({"model": "m", "stream": True, "input": "FAIL_MIDSTREAM a b"}), "x")
            ).content
        )
        + d.close()
    )
    assert isinstance(events[-1], StreamError) and "mid-stream" in events[-1].message
    r = call(C.encode_request(dec({"model": "m", "input": "FAIL_STATUS_429"}), "x"))
    e = C.decode_error(r.status_code, r.content, r.headers)
    assert e.kind is ErrorKind.RATE_LIMITED and e.retry_after == 1


STREAM_FRAMES = [d for _, d in parse_sse(encode_stream(events_text_tool()))]


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


def test_decoder_on_openai_shaped_stream():
    """Hand-written frames as OpenAI sends them: two summary parts, args only in `.done`, refusal text."""

    def f(typ, **kw):
        return b"event: " + typ.encode() + b"\ndata: " + orjson.dumps({"type": typ, **kw}) + b"\n\n"

    wire = b"".join(
        [
            f(
                "response.created",
                response={"id": "resp_9", "model": "o4", "created_at": 11, "status": "in_progress"},
            ),
            f(
                "response.output_item.added",
                output_index=0,
                item={"type": "reasoning", "id": "rs_1", "summary": []},
            ),
            f(
                "response.reasoning_summary_text.delta",
                item_id="rs_1",
                output_index=0,
                summary_index=0,
                delta="a",
            ),
            f(
                "response.reasoning_summary_text.delta",
                item_id="rs_1",
                output_index=0,
                summary_index=1,
                delta="b",
            ),
            f("response.output_item.done", output_index=0, item={"type": "reasoning", "id": "rs_1"}),
            f(
                "response.output_item.added",
                output_index=1,
                item={
                    "type": "function_call",
                    "id": "fc_1",
                    "call_id": "call_1",
                    "name": "f",
                    "arguments": "",
                },
            ),
            f("response.function_call_arguments.done", item_id="fc_1", output_index=1, arguments='{"x":1}'),
            f("response.output_item.done", output_index=1, item={"type": "function_call", "id": "fc_1"}),
            f(
                "response.output_item.added",
                output_index=2,
                item={"type": "message", "id": "msg_1", "content": []},
            ),
            f("response.refusal.delta", item_id="msg_1", output_index=2, content_index=0, delta="no"),
            f("response.output_item.done", output_index=2, item={"type": "message", "id": "msg_1"}),
            f(
                "response.completed",
                response={
                    "id": "resp_9",
                    "status": "completed",
                    "usage": {"input_tokens": 1, "output_tokens": 2},
                },
            ),
        ]
    )
    d = C.stream_decoder()
    assert d.feed(wire) + d.close() == [
        MessageStart(id="resp_9", model="o4", created=11),
        BlockStart(index=0, block=Reasoning()),
        ReasoningDelta(index=0, text="a"),
        ReasoningDelta(index=0, text="\n\n"),
        ReasoningDelta(index=0, text="b"),
        BlockStop(index=0),
        BlockStart(index=1, block=ToolCall(id="call_1", name="f", arguments="")),
        ToolArgsDelta(index=1, json='{"x":1}'),
        BlockStop(index=1),
        BlockStart(index=2, block=Text(text="")),
        TextDelta(index=2, text="no"),
        BlockStop(index=2),
        MessageDelta(stop_reason=StopReason.TOOL_USE, usage=Usage(input_tokens=1, output_tokens=2)),
        MessageStop(),
    ]
