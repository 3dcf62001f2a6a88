"""Ollama codecs: /api/chat and /api/generate both sides, NDJSON streaming, errors, §8 gotchas, the ollama SDK."""

from __future__ import annotations

import base64
import json

import httpx
import ollama
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from smolgate.canonical import (
    BlockStart,
    BlockStop,
    Extras,
    Image,
    Message,
    MessageDelta,
    MessageStart,
    MessageStop,
    OllamaExtras,
    Reasoning,
    ReasoningConfig,
    ReasoningDelta,
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
    ToolChoice,
    ToolResult,
    Usage,
    Video,
    link_tool_results,
)
from smolgate.errors import ErrorKind, GatewayError
from smolgate.protocols import ollama as oll
from smolgate.protocols.base import ModelInfo, RequestContext
from smolgate.protocols.ollama import OllamaChatCodec, OllamaGenerateCodec
from tests.fakes.ollama_upstream import OllamaUpstream

chat = OllamaChatCodec()
gen = OllamaGenerateCodec()
CTX = RequestContext()
PNG = b"\x89PNG\r\n\x1a\nfakepng"
JPEG = b"\xff\xd8\xff\xe0fakejpeg"


def decode(obj, codec=chat) -> Request:
    return codec.decode_request(orjson.dumps(obj), CTX)


def sdk(handler) -> ollama.Client:
    return ollama.Client(host="http://gw", transport=httpx.MockTransport(handler))


# ---------------------------------------------------------------- client side: decode


def capture(call) -> dict:
    seen = []

    def handler(req):
        seen.append(json.loads(req.content))
        return httpx.Response(
            200,
            content=chat.encode_response(
                Response(id="r", model="m", content=[Text(text="ok")]), Request(model="m", messages=[])
            ),
        )

    call(sdk(handler))
    return seen[0]


def test_decode_what_the_ollama_sdk_sends():
    body = capture(
        lambda c: c.chat(
            model="llava",
            messages=[
                {"role": "system", "content": "be brief"},
                {"role": "user", "content": "look", "images": [PNG, JPEG]},
                {
                    "role": "assistant",
                    "content": "",
                    "thinking": "hmm",
                    "tool_calls": [
                        {"function": {"name": "get_weather", "arguments": {"city": "Paris"}}},
                        {"function": {"name": "get_time", "arguments": {}}},
                    ],
                },
                {"role": "tool", "content": "12:00", "tool_name": "get_time"},
                {"role": "tool", "content": "sunny", "tool_name": "get_weather"},
                {"role": "user", "content": "thanks"},
            ],
            tools=[
                {
                    "type": "function",
                    "function": {
                        "name": "get_weather",
                        "description": "d",
                        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
                    },
                }
            ],
            options={
                "num_predict": 20,
                "temperature": 0.1,
                "top_p": 0.5,
                "top_k": 7,
                "seed": 1,
                "stop": ["END"],
            },
            format="json",
            think="high",
            stream=False,
        )
    )
    assert body["messages"][1]["images"][0] == base64.b64encode(PNG).decode()  # §8.2: bare base64
    r = decode(body)
    assert r.model == "llava" and r.stream is False and r.system == [Text(text="be brief")]
    user, assistant, results, last = r.messages
    assert user.content == [
        Image(data=PNG, media_type="image/png"),
        Image(data=JPEG, media_type="image/jpeg"),
        Text(text="look"),
    ]
    assert assistant.content[0] == Reasoning(text="hmm")
    c1, c2 = assistant.content[1:]
    assert (c1.id, c1.name, json.loads(c1.arguments)) == ("call_0", "get_weather", {"city": "Paris"})
    assert (c2.id, c2.name, c2.arguments) == ("call_1", "get_time", "{}")
    assert [(x.call_id, x.name, x.content) for x in results.content] == [
        ("call_1", "get_time", [Text(text="12:00")]),
        ("call_0", "get_weather", [Text(text="sunny")]),
    ]
    assert last.content == [Text(text="thanks")]
    assert r.tools[0].name == "get_weather" and r.tools[0].parameters["properties"]["city"] == {
        "type": "string"
    }
    assert (r.max_tokens, r.temperature, r.top_p, r.top_k, r.seed, r.stop) == (20, 0.1, 0.5, 7, 1, ["END"])
    assert r.response_format == ResponseFormat(type="json_object")
    assert r.reasoning == ReasoningConfig(enabled=True, effort="high")


def test_stream_defaults_to_true_and_ids_are_stable():
    body = {
        "model": "m",
        "messages": [
            {"role": "user", "content": "go"},
            {
                "role": "assistant",
                "tool_calls": [
                    {"function": {"name": "f", "arguments": {"n": 1}}},
                    {"function": {"name": "f", "arguments": {"n": 2}}},
                ],
            },
            {"role": "tool", "content": "a"},
            {"role": "tool", "content": "b"},
        ],
    }
    r1, r2 = decode(body), decode(body)
    assert r1.stream is True and r1 == r2  # §8.1: stream omitted means NDJSON
    assert [(x.call_id, x.name) for x in r1.messages[2].content] == [
        ("call_0", "f"),
        ("call_1", "f"),
    ]  # by order


def test_format_schema_think_and_options_edge_cases():
    r = decode(
        {
            "model": "m",
            "messages": [],
            "format": {"type": "object"},
            "think": False,
            "options": {"num_predict": -1, "stop": "X", "top_k": 4.0},
        }
    )
    assert r.response_format == ResponseFormat(type="json_schema", schema={"type": "object"}, name="response")
    assert (
        r.reasoning == ReasoningConfig(enabled=False)
        and r.max_tokens is None
        and r.stop == ["X"]
        and r.top_k == 4
    )
    r = decode(
        {
            "model": "m",
            "messages": [
                {"role": "assistant", "tool_calls": [{"function": {"name": "f", "arguments": '{"a": 1}'}}]}
            ],
        }
    )  # tolerated: JSON-text arguments
    assert r.messages[0].content[0].arguments == '{"a": 1}'


@pytest.mark.parametrize(
    "body,param",
    [
        ({"messages": []}, "model"),
        ({"model": "m", "messages": 3}, "messages"),
        ({"model": "m", "messages": [{"content": "x"}]}, "messages[0].role"),
        ({"model": "m", "messages": [{"role": "wizard"}]}, "messages[0].role"),
        ({"model": "m", "messages": [{"role": "user", "content": 5}]}, "messages[0].content"),
        ({"model": "m", "messages": [{"role": "user", "images": [5]}]}, "messages[0].images[0]"),
        (
            {"model": "m", "messages": [{"role": "user", "tool_calls": [{"function": {"name": "f"}}]}]},
            "messages[0].tool_calls",
        ),
        (
            {
                "model": "m",
                "messages": [{"role": "assistant", "tool_calls": [{"function": {"arguments": {}}}]}],
            },
            "messages[0].tool_calls[0].function.name",
        ),
        (
            {
                "model": "m",
                "messages": [
                    {"role": "assistant", "tool_calls": [{"function": {"name": "f", "arguments": 3}}]}
                ],
            },
            "messages[0].tool_calls[0].function.arguments",
        ),
        ({"model": "m", "messages": [], "stream": "yes"}, "stream"),
        ({"model": "m", "messages": [], "options": {"num_predict": "5"}}, "options.num_predict"),
        ({"model": "m", "messages": [], "options": {"top_k": 1e19}}, "options.top_k"),  # no 64-bit integer
        ({"model": "m", "messages": [], "format": "yaml"}, "format"),
        ({"model": "m", "messages": [], "think": "extreme"}, "think"),
        ({"model": "m", "messages": [], "tools": [{"function": {}}]}, "tools[0].function.name"),
    ],
)
def test_bad_requests_name_the_field(body, param):
    with pytest.raises(GatewayError) as e:
        decode(body)
    assert e.value.kind == ErrorKind.INVALID_REQUEST and e.value.param == param


def test_decode_generate():
    r = decode(
        {
            "model": "m",
            "prompt": "why?",
            "system": "sys",
            "images": [base64.b64encode(PNG).decode()],
            "suffix": "END",
            "options": {"num_predict": 3},
        },
        gen,
    )
    assert (
        r.stream
        and r.system_text == "sys"
        and r.max_tokens == 3
        and r.extras == Extras(ollama=OllamaExtras(suffix="END"))
    )
    assert r.messages == [
        Message(role="user", content=[Image(data=PNG, media_type="image/png"), Text(text="why?")])
    ]
    with pytest.raises(GatewayError) as e:
        decode({"model": "m", "prompt": 1}, gen)
    assert e.value.param == "prompt"


# ---------------------------------------------------------------- client side: encode (SDK-parsed)

RESP = Response(
    id="r",
    model="smol",
    stop_reason=StopReason.TOOL_USE,
    usage=Usage(input_tokens=9, output_tokens=4),
    content=[
        Reasoning(text="hmm", signature="sig"),
        Text(text="Hello"),
        ToolCall(id="call_x", name="f", arguments='{"a": [1]}'),
    ],
)


def test_encode_response_parsed_by_sdk():
    body = chat.encode_response(RESP, Request(model="alias", messages=[]))
    raw = json.loads(body)
    assert raw["message"]["tool_calls"] == [
        {"id": "call_x", "function": {"index": 0, "name": "f", "arguments": {"a": [1]}}}
    ]  # object
    assert raw["done"] is True and raw["done_reason"] == "stop"
    r = sdk(lambda req: httpx.Response(200, content=body)).chat(model="alias", messages=[], stream=False)
    assert r.message.content == "Hello" and r.message.thinking == "hmm"
    assert r.message.tool_calls[0].function.arguments == {"a": [1]}
    assert (r.prompt_eval_count, r.eval_count, r.done_reason) == (9, 4, "stop")
    g = gen.encode_response(
        Response(id="r", model="smol", content=[Text(text="Hi")], stop_reason=StopReason.MAX_TOKENS),
        Request(model="m", messages=[]),
    )
    gr = sdk(lambda req: httpx.Response(200, content=g)).generate(model="m", prompt="x", stream=False)
    assert gr.response == "Hi" and gr.done_reason == "length"


EVENTS = [
    MessageStart(id="m1", model="smol"),
    BlockStart(index=0, block=Reasoning()),
    ReasoningDelta(index=0, text="think"),
    BlockStop(index=0),
    BlockStart(index=1, block=Text(text="")),
    TextDelta(index=1, text="Hel"),
    TextDelta(index=1, text="lo"),
    BlockStop(index=1),
    BlockStart(index=2, block=ToolCall(id="call_1", name="f", arguments="")),
    ToolArgsDelta(index=2, json='{"ci'),
    ToolArgsDelta(index=2, json='ty":"Paris"}'),
    BlockStop(index=2),
    MessageDelta(stop_reason=StopReason.TOOL_USE, usage=Usage(input_tokens=3, output_tokens=5)),
    MessageStop(),
]


def encode_stream(events, codec=chat) -> bytes:
    enc = codec.stream_encoder(Request(model="alias", messages=[]))
    return b"".join(enc.feed(e) for e in events) + enc.close()


def test_stream_encoder_ndjson_and_sdk():
    wire = encode_stream(EVENTS)
    lines = [json.loads(x) for x in wire.splitlines()]
    assert all(not x["done"] for x in lines[:-1]) and lines[-1]["done"] is True
    assert (
        lines[-1]["prompt_eval_count"] == 3
        and lines[-1]["eval_count"] == 5
        and lines[-1]["done_reason"] == "stop"
    )
    assert lines[-1]["total_duration"] >= 0 and lines[-1]["load_duration"] == 0
    assert chat.stream_media_type == "application/x-ndjson"
    parts = list(
        sdk(lambda req: httpx.Response(200, content=wire)).chat(model="alias", messages=[], stream=True)
    )
    assert "".join(p.message.content for p in parts) == "Hello"
    assert "".join(p.message.thinking or "" for p in parts) == "think"
    calls = [tc for p in parts for tc in (p.message.tool_calls or [])]
    assert calls[0].function.name == "f" and calls[0].function.arguments == {"city": "Paris"}
    gwire = encode_stream(EVENTS, gen)
    gparts = list(
        sdk(lambda req: httpx.Response(200, content=gwire)).generate(model="m", prompt="x", stream=True)
    )
    assert "".join(p.response for p in gparts) == "Hello" and gparts[-1].done


def test_stream_encoder_is_incremental_and_errors_in_band():
    enc = chat.stream_encoder(Request(model="m", messages=[]))
    enc.feed(EVENTS[0])
    assert enc.feed(TextDelta(index=0, text="now")).endswith(b"\n")
    wire = encode_stream([*EVENTS[:6], StreamError(kind=ErrorKind.UPSTREAM, message="boom")])
    assert wire.splitlines()[-1] == b'{"error":"boom"}'
    with pytest.raises(ollama.ResponseError) as e:
        for _ in sdk(lambda req: httpx.Response(200, content=wire)).chat(model="m", messages=[], stream=True):
            pass
    assert "boom" in str(e.value)


@pytest.mark.parametrize(
    "err,status",
    [
        (GatewayError(ErrorKind.INVALID_REQUEST, "bad field", param="messages"), 400),
        (GatewayError(ErrorKind.NOT_FOUND, "model 'x' not found"), 404),
        (GatewayError(ErrorKind.RATE_LIMITED, "slow", retry_after=2), 429),
        (GatewayError(ErrorKind.UPSTREAM, "upstream broke"), 502),
    ],
)
def test_encode_error_shape_and_sdk(err, status):
    reply = chat.encode_error(err)
    assert reply.status == status and json.loads(reply.body) == {"error": err.message}  # §8.3: a string
    if err.retry_after:
        assert reply.headers == {"retry-after": "2"}
    with pytest.raises(ollama.ResponseError) as e:
        sdk(lambda req: httpx.Response(reply.status, content=reply.body)).chat(
            model="m", messages=[], stream=False
        )
    assert e.value.status_code == status and e.value.error == err.message


def test_non_chat_endpoints_parse_in_sdk():
    models = [ModelInfo(id="smol", context_length=8192, supports_images=True, created=1700000000)]
    c = sdk(
        lambda req: httpx.Response(
            200,
            content={"/api/tags": oll.encode_tags(models), "/api/show": oll.encode_show(models[0])}[
                req.url.path
            ],
        )
    )
    listed = c.list()
    assert listed.models[0].model == "smol" and listed.models[0].modified_at.year == 2023
    shown = c.show("smol")
    assert "vision" in shown.capabilities and shown.modelinfo["smolgate.context_length"] == 8192
    assert json.loads(oll.encode_version())["version"]


# ---------------------------------------------------------------- upstream side


def test_encode_request():
    req = Request(
        model="alias",
        stream=False,
        system=[Text(text="s1"), Text(text="s2")],
        max_tokens=9,
        top_k=2,
        stop=["X"],
        tools=[Tool(name="get_weather"), Tool(name="other")],
        tool_choice=ToolChoice(mode="tool", name="get_weather"),
        response_format=ResponseFormat(type="json_schema", schema={"type": "object"}),
        reasoning=ReasoningConfig(effort="low"),
        messages=[
            Message(role="user", content=[Text(text="hi"), Image(data=PNG, media_type="image/png")]),
            Message(
                role="assistant",
                content=[
                    Reasoning(text="r", signature="sig"),
                    Text(text="ok"),
                    ToolCall(id="toolu_9", name="get_weather", arguments='{"c":1}'),
                ],
            ),
            Message(
                role="user",
                content=[ToolResult(call_id="toolu_9", content=[Text(text="sunny")]), Text(text="more")],
            ),
        ],
    )
    link_tool_results(req.messages)
    up = chat.encode_request(req, "llama3")
    assert up.path == "/api/chat" and up.stream is False
    body = json.loads(up.body)
    assert body["stream"] is False  # explicit, never defaulted
    assert body["messages"] == [
        {"role": "system", "content": "s1\n\ns2"},
        {"role": "user", "content": "hi", "images": [base64.b64encode(PNG).decode()]},
        {
            "role": "assistant",
            "content": "ok",
            "thinking": "r",
            "tool_calls": [
                {"id": "toolu_9", "function": {"index": 0, "name": "get_weather", "arguments": {"c": 1}}}
            ],
        },
        {"role": "tool", "content": "sunny", "tool_name": "get_weather", "tool_call_id": "toolu_9"},
        {"role": "user", "content": "more"},
    ]
    assert [t["function"]["name"] for t in body["tools"]] == ["get_weather"]
    assert body["options"] == {"num_predict": 9, "top_k": 2, "stop": ["X"]}
    assert body["format"] == {"type": "object"} and body["think"] == "low"
    req.tool_choice, req.reasoning, req.response_format = (
        ToolChoice(mode="none"),
        ReasoningConfig(enabled=False),
        ResponseFormat(type="json_object"),
    )
    body = json.loads(chat.encode_request(req, "llama3").body)
    assert "tools" not in body and body["think"] is False and body["format"] == "json"
    for bad in (Image(url="https://x/y.png"), Video(data=b"v")):
        with pytest.raises(GatewayError):
            chat.encode_request(Request(model="m", messages=[Message(role="user", content=[bad])]), "m")


def test_decode_response_and_errors():
    r = chat.decode_response(
        orjson.dumps(
            {
                "model": "llama3",
                "message": {
                    "role": "assistant",
                    "content": "Hi",
                    "thinking": "t",
                    "tool_calls": [{"function": {"name": "f", "arguments": {"a": 1}}}],
                },
                "done": True,
                "done_reason": "stop",
                "prompt_eval_count": 5,
                "eval_count": 2,
            }
        )
    )
    assert r.content[:2] == [Reasoning(text="t"), Text(text="Hi")] and r.content[2].name == "f"
    assert r.stop_reason == StopReason.TOOL_USE and r.usage == Usage(input_tokens=5, output_tokens=2)
    r = chat.decode_response(b'{"message":{"content":"x"},"done":true,"done_reason":"length"}')
    assert r.stop_reason == StopReason.MAX_TOKENS
    for body in (b"nope", b"[1]", b'{"error":"model crashed"}'):
        with pytest.raises(GatewayError) as e:
            chat.decode_response(body)
        assert e.value.kind == ErrorKind.UPSTREAM
    e = chat.decode_error(404, b'{"error":"model \\"x\\" not found, try pulling it first"}', {})
    assert e.kind == ErrorKind.NOT_FOUND and "pulling" in e.message
    e = chat.decode_error(429, b'{"error":"busy"}', {"retry-after": "4"})
    assert e.kind == ErrorKind.RATE_LIMITED and e.retry_after == 4.0
    e = chat.decode_error(500, b"", {})
    assert e.kind == ErrorKind.UPSTREAM and "500" in e.message


UP_STREAM = b"".join(
    orjson.dumps(x) + b"\n"
    for x in [
        {
            "model": "llama3",
            "created_at": "t",
            "message": {"role": "assistant", "content": "", "thinking": "hm"},
            "done": False,
        },
        {
            "model": "llama3",
            "created_at": "t",
            "message": {"role": "assistant", "content": "H\u00e9"},
            "done": False,
        },
        {
            "model": "llama3",
            "created_at": "t",
            "message": {"role": "assistant", "content": "llo"},
            "done": False,
        },
        {
            "model": "llama3",
            "created_at": "t",
            "message": {
                "role": "assistant",
                "content": "",
                "tool_calls": [{"function": {"name": "f", "arguments": {"a": 1}}}],
            },
            "done": False,
        },
        {
            "model": "llama3",
            "created_at": "t",
            "message": {"role": "assistant", "content": ""},
            "done": True,
            "done_reason": "stop",
            "prompt_eval_count": 7,
            "eval_count": 3,
            "total_duration": 5,
        },
    ]
)


def run_decoder(chunks):
    dec = chat.stream_decoder()
    out = []
    for c in chunks:
        out += dec.feed(c)
    return out + dec.close()


def normalise(events):
    return [
        BlockStart(index=e.index, block=ToolCall(id="X", name=e.block.name))
        if isinstance(e, BlockStart) and isinstance(e.block, ToolCall)
        else e
        for e in events
        if not isinstance(e, MessageStart)
    ]


def test_stream_decoder_events_and_every_byte_split():
    ev = run_decoder([UP_STREAM])
    assert isinstance(ev[0], MessageStart) and ev[0].model == "llama3"
    want = [
        BlockStart(index=0, block=Reasoning()),
        ReasoningDelta(index=0, text="hm"),
        BlockStop(index=0),
        BlockStart(index=1, block=Text(text="")),
        TextDelta(index=1, text="Hé"),
        TextDelta(index=1, text="llo"),
        BlockStop(index=1),
        BlockStart(index=2, block=ToolCall(id="X", name="f")),
        ToolArgsDelta(index=2, json='{"a":1}'),
        BlockStop(index=2),
        MessageDelta(stop_reason=StopReason.TOOL_USE, usage=Usage(input_tokens=7, output_tokens=3)),
        MessageStop(),
    ]
    assert normalise(ev) == want
    assert normalise(run_decoder([UP_STREAM[i : i + 1] for i in range(len(UP_STREAM))])) == want
    for cut in range(1, len(UP_STREAM), 3):
        assert normalise(run_decoder([UP_STREAM[:cut], UP_STREAM[cut:]])) == want


def test_stream_decoder_truncated_and_in_band_error():
    ev = run_decoder([UP_STREAM[:150]])
    assert isinstance(ev[-1], StreamError)
    ev = run_decoder([UP_STREAM.splitlines(keepends=True)[1], b'{"error":"out of memory"}\n'])
    assert ev[-1] == StreamError(kind=ErrorKind.UPSTREAM, message="out of memory")
    assert run_decoder([b"{"])[-1].kind == "upstream"


def test_round_trip_client_wire_to_upstream_wire():
    """ollama wire → canonical → ollama wire is the identity on what Ollama can say."""
    body = {
        "model": "m",
        "stream": True,
        "messages": [
            {"role": "system", "content": "s"},
            {"role": "user", "content": "hi", "images": [base64.b64encode(PNG).decode()]},
            {
                "role": "assistant",
                "content": "ok",
                "thinking": "t",
                "tool_calls": [
                    {"id": "call_k2", "function": {"index": 0, "name": "f", "arguments": {"x": [1, 2]}}}
                ],
            },
            {"role": "tool", "content": "res", "tool_name": "f", "tool_call_id": "call_k2"},
        ],
        "tools": [
            {
                "type": "function",
                "function": {"name": "f", "description": "d", "parameters": {"type": "object"}},
            }
        ],
        "options": {"num_predict": 5, "temperature": 0.5, "stop": ["Z"]},
        "format": "json",
        "think": True,
    }
    sent = json.loads(chat.encode_request(decode(body), "m").body)
    assert sent == body


# ---------------------------------------------------------------- fuzz

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=20,
)
KEYS = [
    "model",
    "messages",
    "role",
    "content",
    "images",
    "thinking",
    "tool_calls",
    "function",
    "name",
    "arguments",
    "tool_name",
    "tool_call_id",
    "tools",
    "parameters",
    "options",
    "num_predict",
    "stop",
    "top_k",
    "format",
    "think",
    "stream",
    "prompt",
    "system",
    "suffix",
]
VALID = {
    "model": "m",
    "prompt": "p",
    "system": "s",
    "images": ["iVBORw=="],
    "messages": [
        {"role": "system", "content": "s"},
        {"role": "user", "content": "hi", "images": ["iVBORw=="]},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [{"function": {"name": "f", "arguments": {"a": 1}}}],
        },
        {"role": "tool", "content": "x", "tool_name": "f"},
    ],
    "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
    "options": {"num_predict": 3, "stop": ["a"], "top_k": 2},
    "format": "json",
    "think": "low",
}


def mutate(obj, path, value):
    if not path:
        return value
    if isinstance(obj, dict) and obj:
        k = sorted(obj)[path[0] % len(obj)]
        return {**obj, k: mutate(obj[k], path[1:], value)}
    if isinstance(obj, list) and obj:
        i = path[0] % len(obj)
        return [*obj[:i], mutate(obj[i], path[1:], value), *obj[i + 1 :]]
    return value


def only_gateway_errors(obj):
    for codec in (chat, gen):
        try:
            r = codec.decode_request(json.dumps(obj).encode(), CTX)
        except GatewayError as e:
            assert 400 <= e.status < 500
        else:
            assert isinstance(r, Request)
            try:
                codec.encode_request(r, "m")
            except GatewayError as e:
                assert e.status == 400


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.integers(0, 50), max_size=6), json_values, st.sampled_from(KEYS), st.booleans())
def test_fuzz_mutated_valid_request(path, value, key, insert):
    only_gateway_errors(mutate(VALID, path, {key: value} if insert else value))


@settings(max_examples=200, deadline=None)
@given(json_values)
def test_fuzz_random_json(value):
    only_gateway_errors(value)


# ---------------------------------------------------------------- the fake upstream, with the real SDK


@pytest.fixture(scope="module")
def fake():
    f = OllamaUpstream().start()
    yield f
    f.stop()


@pytest.fixture(scope="module")
def locked():
    f = OllamaUpstream(api_key="olla").start()
    yield f
    f.stop()


def test_fake_with_sdk(fake):
    c = ollama.Client(host=fake.url)
    r = c.chat(
        model="fake",
        messages=[{"role": "system", "content": "sys"}, {"role": "user", "content": "hello"}],
        stream=False,
    )
    assert r.message.content == "You said: hello | system=sys images=0 turns=1" and r.done_reason == "stop"
    parts = list(c.chat(model="fake", messages=[{"role": "user", "content": "hello"}], stream=True))
    assert len(parts) > 2 and parts[-1].done and parts[-1].eval_count == len(parts) - 1
    assert fake.last.json["stream"] is True
    raw = httpx.post(
        fake.url + "/api/chat", json={"model": "fake", "messages": [{"role": "user", "content": "x"}]}
    )
    assert raw.headers["content-type"] == "application/x-ndjson" and len(raw.content.splitlines()) > 2  # §8.1
    r = c.chat(
        model="fake",
        messages=[{"role": "user", "content": "weather?"}],
        stream=False,
        tools=[{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}],
    )
    assert r.message.tool_calls[0].function.arguments == {"city": "Paris"}
    r = c.chat(
        model="fake",
        messages=[{"role": "user", "content": "one two three"}],
        options={"num_predict": 2},
        stream=False,
    )
    assert r.done_reason == "length" and r.message.content == "You said:"
    g = c.generate(model="fake", prompt="hi", images=[PNG], stream=False)
    assert g.response == "You said: hi | system=none images=1 turns=1"
    assert c.list().models[0].model == "fake:latest"
    with pytest.raises(ollama.ResponseError) as e:
        c.chat(model="fake", messages=[{"role": "user", "content": "FAIL_STATUS_404"}], stream=False)
    assert e.value.status_code == 404
    with pytest.raises(ollama.ResponseError):
        for _ in c.chat(
            model="fake", messages=[{"role": "user", "content": "FAIL_MIDSTREAM now"}], stream=True
        ):
            pass


def test_fake_auth(locked):
    with pytest.raises(ollama.ResponseError) as e:
        ollama.Client(host=locked.url).chat(
            model="m", messages=[{"role": "user", "content": "x"}], stream=False
        )
    assert e.value.status_code == 401
    ok = ollama.Client(host=locked.url, headers={"Authorization": "Bearer olla"})
    assert ok.chat(model="m", messages=[{"role": "user", "content": "x"}], stream=False).done


def test_codec_upstream_side_against_fake(fake):
    def call(r: Request):
        up = chat.encode_request(r, "fake")
        return httpx.post(fake.url + up.path, content=up.body, headers=up.headers)

    req = Request(
        model="a",
        messages=[Message(role="user", content=[Text(text="weather please")])],
        tools=[Tool(name="get_weather")],
    )
    resp = chat.decode_response(call(req).content)
    tc = resp.content[0]
    assert isinstance(tc, ToolCall) and resp.stop_reason == StopReason.TOOL_USE
    req.messages += [
        Message(role="assistant", content=[tc]),
        Message(role="user", content=[ToolResult(call_id=tc.id, content=[Text(text="sunny")])]),
    ]
    link_tool_results(req.messages)
    assert chat.decode_response(call(req).content).content == [Text(text="The tool said: sunny")]
    assert fake.last.json["messages"][-1] == {
        "role": "tool",
        "content": "sunny",
        "tool_name": "get_weather",
        "tool_call_id": tc.id,
    }
    raw = call(
        Request(model="a", stream=True, messages=[Message(role="user", content=[Text(text="hi")])])
    ).content
    ev = run_decoder([raw[i : i + 5] for i in range(0, len(raw), 5)])
    assert "".join(e.text for e in ev if isinstance(e, TextDelta)).startswith("You said: hi")
    assert isinstance(ev[-1], MessageStop) and ev[-2].usage.output_tokens > 0
    bad = call(Request(model="a", messages=[Message(role="user", content=[Text(text="FAIL_STATUS_429")])]))
    err = chat.decode_error(bad.status_code, bad.content, bad.headers)
    assert err.kind == ErrorKind.RATE_LIMITED and err.retry_after == 1.0


@settings(max_examples=150, deadline=None)
@given(st.lists(json_values, max_size=4), st.integers(1, 40))
def test_fuzz_stream_decoder_never_raises(docs, step):
    wire = b"".join(json.dumps(d).encode() + b"\n" for d in docs)
    events = run_decoder([wire[i : i + step] for i in range(0, len(wire), step)])
    assert isinstance(events[-1], (MessageStop, StreamError))


def test_fake_slow_streams_incrementally(fake):
    import time

    t0 = time.monotonic()
    with httpx.stream(
        "POST", fake.url + "/api/chat", json={"model": "m", "messages": [{"role": "user", "content": "SLOW"}]}
    ) as r:
        stamps = [time.monotonic() - t0 for _ in r.iter_raw()]
    assert stamps[0] < 0.2 and stamps[-1] > 1.0
