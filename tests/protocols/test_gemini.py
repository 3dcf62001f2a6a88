"""Gemini codec: both sides, streaming, errors, §8 gotchas, google-genai SDK parses, the fake upstream."""

from __future__ import annotations

import base64
import json

import httpx
import orjson
import pytest
from google import genai
from google.genai import errors as genai_errors
from google.genai import types
from hypothesis import HealthCheck, example, given, settings
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
from smolgate.protocols import gemini
from smolgate.protocols.base import ModelInfo, RequestContext
from smolgate.protocols.gemini import GeminiCodec
from tests.fakes.gemini_upstream import GeminiUpstream

codec = GeminiCodec()
CTX = RequestContext(path_params={"model": "gemini-x", "method": "generateContent"})
SCTX = RequestContext(
    path_params={"model": "gemini-x", "method": "streamGenerateContent"}, query={"alt": "sse"}
)
PNG = b"\x89PNG\r\n\x1a\nfakepng"


def decode(obj, ctx=CTX) -> Request:
    return codec.decode_request(orjson.dumps(obj), ctx)


def sdk(handler, api_version: str = "v1") -> genai.Client:
    return genai.Client(
        api_key="k",
        http_options=types.HttpOptions(
            base_url="http://gw",
            api_version=api_version,
            httpx_client=httpx.Client(transport=httpx.MockTransport(handler)),
        ),
    )


# ---------------------------------------------------------------- client side: decode


def capture_sdk_request(**kwargs) -> tuple[httpx.Request, dict]:
    seen: list[httpx.Request] = []

    def handler(req: httpx.Request) -> httpx.Response:
        seen.append(req)
        return httpx.Response(
            200,
            content=codec.encode_response(
                Response(id="r", model="m", content=[Text(text="ok")]), Request(model="m", messages=[])
            ),
        )

    sdk(handler).models.generate_content(model="gemini-x", **kwargs)
    return seen[0], json.loads(seen[0].content)


def test_decode_what_google_genai_sends():
    req, body = capture_sdk_request(
        contents=[
            types.Content(
                role="user",
                parts=[
                    types.Part(text="hi"),
                    types.Part.from_bytes(data=PNG, mime_type="image/png"),
                    types.Part.from_uri(file_uri="https://e.x/v.mp4", mime_type="video/mp4"),
                ],
            ),
            types.Content(
                role="model",
                parts=[
                    types.Part(
                        function_call=types.FunctionCall(name="get_weather", args={"city": "Paris"}),
                        thought_signature=b"sig-bytes",
                    )
                ],
            ),
            types.Content(
                role="user",
                parts=[types.Part.from_function_response(name="get_weather", response={"output": "sunny"})],
            ),
        ],
        config=types.GenerateContentConfig(
            system_instruction="be brief",
            temperature=0.5,
            top_p=0.9,
            top_k=3,
            max_output_tokens=10,
            stop_sequences=["END"],
            seed=7,
            response_mime_type="application/json",
            response_schema={"type": "OBJECT", "properties": {"a": {"type": "STRING", "nullable": True}}},
            thinking_config=types.ThinkingConfig(thinking_budget=100, include_thoughts=True),
            tools=[
                types.Tool(
                    function_declarations=[
                        types.FunctionDeclaration(
                            name="get_weather",
                            description="d",
                            parameters=types.Schema(
                                type="OBJECT",
                                properties={"city_name": types.Schema(type="STRING")},
                                required=["city_name"],
                            ),
                        )
                    ]
                )
            ],
            tool_config=types.ToolConfig(
                function_calling_config=types.FunctionCallingConfig(
                    mode="ANY", allowed_function_names=["get_weather"]
                )
            ),
        ),
    )
    assert req.url.path == "/v1/models/gemini-x:generateContent"
    assert (
        body["contents"][0]["parts"][1]["inlineData"]["mime_type"] == "image/png"
    )  # §8.2: snake inside camel
    assert body["generationConfig"]["thinkingConfig"] == {"include_thoughts": True, "thinking_budget": 100}
    r = decode(body)
    assert r.model == "gemini-x" and not r.stream
    assert r.system == [Text(text="be brief")]
    user, model, result = r.messages
    assert user.content == [
        Text(text="hi"),
        Image(data=PNG, media_type="image/png"),
        Video(url="https://e.x/v.mp4", media_type="video/mp4"),
    ]
    call = model.content[0]
    assert (
        isinstance(call, ToolCall)
        and call.name == "get_weather"
        and json.loads(call.arguments) == {"city": "Paris"}
    )
    assert call.signature == base64.b64encode(b"sig-bytes").decode()
    assert result.content == [ToolResult(call_id=call.id, name="get_weather", content=[Text(text="sunny")])]
    assert r.tools == [
        Tool(
            name="get_weather",
            description="d",
            parameters={
                "type": "object",
                "properties": {"city_name": {"type": "string"}},
                "required": ["city_name"],
            },
        )
    ]
    assert r.tool_choice == ToolChoice(mode="tool", name="get_weather")
    assert (r.temperature, r.top_p, r.top_k, r.max_tokens, r.stop, r.seed) == (0.5, 0.9, 3, 10, ["END"], 7)
    assert r.response_format.type == "json_schema"
    assert r.response_format.schema == {"type": "object", "properties": {"a": {"type": ["string", "null"]}}}
    assert r.reasoning.budget_tokens == 100 and r.reasoning.include_thoughts is True and r.reasoning.enabled


def test_stream_method_and_model_from_path():
    r = decode({"contents": [{"parts": [{"text": "x"}]}]}, SCTX)
    assert r.stream and r.model == "gemini-x" and r.messages[0].role == "user"
    with pytest.raises(GatewayError) as e:
        decode({"contents": []}, RequestContext(path_params={"model": "m", "method": "embedContent"}))
    assert e.value.param == "method"


def test_snake_case_everywhere():
    r = decode(
        {
            "contents": [
                {"role": "user", "parts": [{"inline_data": {"mime_type": "video/webm", "data": "AAAA"}}]},
                {"role": "model", "parts": [{"function_call": {"name": "f", "args": {"snake_key": 1}}}]},
                {"role": "user", "parts": [{"function_response": {"name": "f", "response": {"x": 1}}}]},
            ],
            "system_instruction": {"parts": [{"text": "s"}]},
            "tools": [
                {"function_declarations": [{"name": "f", "parameters_json_schema": {"type": "object"}}]}
            ],
            "tool_config": {"function_calling_config": {"mode": "NONE"}},
            "generation_config": {
                "max_output_tokens": 5,
                "response_mime_type": "application/json",
                "thinking_config": {"thinking_budget": 0},
            },
        }
    )
    assert isinstance(r.messages[0].content[0], Video)
    assert json.loads(r.messages[1].content[0].arguments) == {"snake_key": 1}  # args are data: never re-keyed
    assert r.messages[2].content[0].content == [Text(text='{"x":1}')]
    assert r.system_text == "s" and r.tools[0].parameters == {"type": "object"}
    assert r.tool_choice.mode == "none" and r.max_tokens == 5
    assert r.response_format.type == "json_object" and r.reasoning.enabled is False


def test_stable_ids_and_matching_by_name_and_order():
    body = {
        "contents": [
            {"role": "user", "parts": [{"text": "go"}]},
            {
                "role": "model",
                "parts": [
                    {"functionCall": {"name": "a.b", "args": {}}},
                    {"functionCall": {"name": "f", "args": {"n": 1}}},
                    {"functionCall": {"name": "f", "args": {"n": 2}}},
                ],
            },
            {
                "role": "user",
                "parts": [
                    {"functionResponse": {"name": "f", "response": {"output": "one"}}},
                    {"functionResponse": {"name": "f", "response": {"error": "two failed"}}},
                    {"functionResponse": {"name": "a.b", "response": {"result": "ab"}}},
                ],
            },
        ]
    }
    r1, r2 = decode(body), decode(body)
    assert r1 == r2  # same history, same ids
    calls = r1.messages[1].content
    assert [c.id for c in calls] == ["call_a_b_1_0", "call_f_1_1", "call_f_1_2"]
    res = r1.messages[2].content
    assert [(x.call_id, x.name, x.content[0].text, x.is_error) for x in res] == [
        ("call_f_1_1", "f", "one", False),
        ("call_f_1_2", "f", "two failed", True),
        ("call_a_b_1_0", "a.b", "ab", False),
    ]


def test_explicit_ids_win():
    r = decode(
        {
            "contents": [
                {
                    "role": "model",
                    "parts": [
                        {"functionCall": {"id": "c1", "name": "f"}},
                        {"functionCall": {"id": "c2", "name": "f"}},
                    ],
                },
                {
                    "role": "user",
                    "parts": [
                        {"functionResponse": {"id": "c2", "name": "f", "response": {}}},
                        {"functionResponse": {"name": "f", "response": {}}},
                    ],
                },
            ]
        }
    )
    assert [x.call_id for x in r.messages[1].content] == ["c2", "c1"]


def test_thoughts_and_signatures_decode():
    r = decode(
        {
            "contents": [
                {
                    "role": "model",
                    "parts": [
                        {"text": "thinking…", "thought": True, "thoughtSignature": "AAA="},
                        {"text": "answer", "thoughtSignature": "BBB="},
                        {"functionCall": {"name": "f", "args": {}}, "thoughtSignature": "CCC="},
                    ],
                }
            ]
        }
    )
    blocks = r.messages[0].content
    assert blocks[0] == Reasoning(text="thinking…", signature="gemini:AAA=")
    assert blocks[1:3] == [Text(text="answer"), Reasoning(signature="gemini:BBB=")]
    assert blocks[3].signature == "CCC="


@pytest.mark.parametrize(
    "body,param",
    [
        ({}, "contents"),
        ({"contents": {}}, "contents"),
        ({"contents": [{"role": "system", "parts": []}]}, "contents[0].role"),
        ({"contents": [{"parts": [{"text": 5}]}]}, "contents[0].parts[0].text"),
        (
            {"contents": [{"parts": [{"inlineData": {"mimeType": "application/pdf", "data": "AA=="}}]}]},
            "contents[0].parts[0].inlineData.mimeType",
        ),
        (
            {"contents": [{"parts": [{"inlineData": {"data": "AA=="}}]}]},
            "contents[0].parts[0].inlineData.mimeType",
        ),
        (
            {"contents": [{"role": "user", "parts": [{"functionCall": {"name": "f"}}]}]},
            "contents[0].parts[0].functionCall",
        ),
        (
            {"contents": [{"role": "model", "parts": [{"functionCall": {"args": {}}}]}]},
            "contents[0].parts[0].functionCall.name",
        ),
        ({"contents": [], "generationConfig": {"candidateCount": 2}}, "generationConfig.candidateCount"),
        ({"contents": [], "generationConfig": {"temperature": "hot"}}, "generationConfig.temperature"),
        (
            {"contents": [], "generationConfig": {"topK": 2.0**64}},
            "generationConfig.topK",
        ),  # no 64-bit integer
        (
            {"contents": [], "tools": [{"functionDeclarations": [{}]}]},
            "tools[0].functionDeclarations[0].name",
        ),
        (
            {"contents": [], "toolConfig": {"functionCallingConfig": {"mode": "SOMETIMES"}}},
            "toolConfig.functionCallingConfig.mode",
        ),
    ],
)
def test_bad_requests_name_the_field(body, param):
    with pytest.raises(GatewayError) as e:
        decode(body)
    assert e.value.kind == ErrorKind.INVALID_REQUEST and e.value.param == param


def test_count_tokens_request_and_models():
    r = gemini.decode_count_tokens_request(
        orjson.dumps(
            {
                "generateContentRequest": {
                    "model": "models/gemini-x",
                    "contents": [{"parts": [{"text": "a b"}]}],
                }
            }
        ),
        RequestContext(),
    )
    assert r.model == "gemini-x" and r.messages[0].content == [Text(text="a b")]
    r = gemini.decode_count_tokens_request(b'{"contents":[{"parts":[{"text":"q"}]}]}', CTX)
    assert r.model == "gemini-x"
    with pytest.raises(GatewayError) as e:
        gemini.decode_count_tokens_request(b'{"generateContentRequest":{"contents":5}}', CTX)
    assert e.value.param == "generateContentRequest.contents"
    assert json.loads(gemini.encode_count_tokens(12)) == {"totalTokens": 12}
    models = json.loads(gemini.encode_models([ModelInfo(id="smol", context_length=8192)]))["models"]
    assert models[0]["name"] == "models/smol" and models[0]["inputTokenLimit"] == 8192
    assert "generateContent" in models[0]["supportedGenerationMethods"]


def test_sdk_count_tokens_and_list_models_parse():
    def handler(req):
        if req.url.path.endswith(":countTokens"):
            return httpx.Response(200, content=gemini.encode_count_tokens(42))
        return httpx.Response(200, content=gemini.encode_models([ModelInfo(id="smol", context_length=100)]))

    client = sdk(handler)
    assert client.models.count_tokens(model="smol", contents="hi").total_tokens == 42
    listed = list(client.models.list())
    assert listed[0].name == "models/smol" and listed[0].input_token_limit == 100


# ---------------------------------------------------------------- client side: encode (SDK-parsed)

RESP = Response(
    id="resp-1",
    model="smol-1",
    stop_reason=StopReason.TOOL_USE,
    usage=Usage(input_tokens=10, output_tokens=7, reasoning_tokens=2, cached_tokens=3),
    content=[
        Reasoning(text="hmm", signature="gemini:U0lH"),
        Text(text="Hello"),
        Reasoning(signature="gemini:VFhU"),
        ToolCall(id="call_1", name="f", arguments='{"a":1}', signature="Q0FMTA=="),
    ],
)


THOUGHTFUL = Request(model="x", messages=[], reasoning=ReasoningConfig(include_thoughts=True))


def test_encode_response_parsed_by_sdk():
    body = codec.encode_response(RESP, THOUGHTFUL)
    raw = json.loads(body)
    parts = raw["candidates"][0]["content"]["parts"]
    assert parts[0] == {"text": "hmm", "thought": True, "thoughtSignature": "U0lH"}
    assert parts[1] == {"text": "Hello", "thoughtSignature": "VFhU"}  # folded back onto its text part
    assert raw["candidates"][0]["finishReason"] == "STOP"  # §8.5: no tool finish reason
    r = sdk(lambda req: httpx.Response(200, content=body)).models.generate_content(model="m", contents="hi")
    assert r.text == "Hello"  # thought parts are not answer text
    assert (
        r.function_calls[0].name == "f"
        and r.function_calls[0].args == {"a": 1}
        and r.function_calls[0].id == "call_1"
    )
    assert r.candidates[0].content.parts[2].thought_signature == b"CALL"
    um = r.usage_metadata
    assert (
        um.prompt_token_count,
        um.candidates_token_count,
        um.thoughts_token_count,
        um.cached_content_token_count,
        um.total_token_count,
    ) == (10, 5, 2, 3, 17)
    assert r.model_version == "smol-1" and r.response_id == "resp-1"


def test_foreign_signatures_never_reach_gemini_clients():
    resp = Response(
        id="r",
        model="m",
        content=[Reasoning(text="t", signature="anthropic-sig"), Text(text="x"), Reasoning(redacted="blob")],
    )
    parts = json.loads(codec.encode_response(resp, THOUGHTFUL))["candidates"][0]["content"]["parts"]
    assert parts == [{"text": "t", "thought": True}, {"text": "x"}]


def test_thoughts_hidden_unless_include_thoughts_but_signatures_kept():
    plain = Request(model="m", messages=[])
    parts = json.loads(codec.encode_response(RESP, plain))["candidates"][0]["content"]["parts"]
    assert parts[0] == {"text": "", "thoughtSignature": "U0lH"} and not any(p.get("thought") for p in parts)
    wire = encode_stream(EVENTS, plain)
    assert b'"thought"' not in wire and b"think" not in wire and b'"thoughtSignature":"U0lH"' in wire


def test_client_round_trip_wire_canonical_wire():
    content = [
        {"role": "user", "parts": [{"text": "hi"}]},
        {
            "role": "model",
            "parts": [
                {"text": "plan", "thought": True, "thoughtSignature": "AAA="},
                {"text": "ok", "thoughtSignature": "BBB="},
                {
                    "functionCall": {"id": "c1", "name": "f", "args": {"x": [1, 2]}},
                    "thoughtSignature": "CCC=",
                },
            ],
        },
        {
            "role": "user",
            "parts": [
                {"functionResponse": {"id": "c1", "name": "f", "response": {"output": "r"}}},
                {"inlineData": {"mimeType": "image/png", "data": base64.b64encode(PNG).decode()}},
            ],
        },
    ]
    r = decode(
        {
            "contents": content,
            "systemInstruction": {"parts": [{"text": "s"}]},
            "generationConfig": {"temperature": 0.2, "stopSequences": ["Z"]},
        }
    )
    up = codec.encode_request(r, "gemini-x")
    sent = json.loads(up.body)
    assert sent["contents"] == content
    assert sent["systemInstruction"]["parts"] == [{"text": "s"}]
    assert sent["generationConfig"] == {"temperature": 0.2, "stopSequences": ["Z"]}


# ---------------------------------------------------------------- client side: streaming

EVENTS = [
    MessageStart(id="resp-9", model="smol-1"),
    BlockStart(index=0, block=Reasoning()),
    ReasoningDelta(index=0, text="think"),
    SignatureDelta(index=0, signature="gemini:U0lH"),
    BlockStop(index=0),
    BlockStart(index=1, block=Text(text="")),
    TextDelta(index=1, text="Hel"),
    TextDelta(index=1, text="lo"),
    BlockStop(index=1),
    BlockStart(index=2, block=ToolCall(id="call_7", name="f", arguments="")),
    ToolArgsDelta(index=2, json='{"ci'),
    ToolArgsDelta(index=2, json='ty":"Paris"}'),
    BlockStop(index=2),
    MessageDelta(stop_reason=StopReason.TOOL_USE, usage=Usage(input_tokens=4, output_tokens=6)),
    MessageStop(),
]


def encode_stream(events, req: Request = THOUGHTFUL) -> bytes:
    enc = codec.stream_encoder(req)
    out = b""
    for ev in events:
        out += enc.feed(ev)
    return out + enc.close()


def test_stream_encoder_frames_and_sdk_parse():
    wire = encode_stream(EVENTS)
    frames = [f for f in wire.split(b"\n\n") if f]
    assert all(f.startswith(b"data: {") for f in frames)  # §8.3: "data: " with a space, no [DONE]
    assert b"[DONE]" not in wire
    docs = [json.loads(f[6:]) for f in frames]
    assert docs[-1]["candidates"][0]["finishReason"] == "STOP"
    assert docs[-1]["usageMetadata"]["totalTokenCount"] == 10
    chunks = list(
        sdk(
            lambda req: httpx.Response(200, content=wire, headers={"content-type": "text/event-stream"})
        ).models.generate_content_stream(model="m", contents="hi")
    )
    text = "".join(c.text or "" for c in chunks)
    assert text == "Hello"
    calls = [fc for c in chunks for fc in (c.function_calls or [])]
    assert calls[0].args == {"city": "Paris"} and calls[0].id == "call_7"
    thoughts = [p for c in chunks for p in c.candidates[0].content.parts if p.thought]
    assert thoughts[0].text == "think" and thoughts[-1].thought_signature == b"SIG"


def test_stream_encoder_emits_before_the_stream_ends():
    enc = codec.stream_encoder(Request(model="m", messages=[]))
    enc.feed(EVENTS[0])
    enc.feed(BlockStart(index=0, block=Text(text="")))
    assert enc.feed(TextDelta(index=0, text="first")).startswith(b"data: ")


def test_stream_error_midstream_raises_in_sdk():
    wire = encode_stream([*EVENTS[:7], StreamError(kind=ErrorKind.OVERLOADED, message="upstream fell over")])
    last = json.loads(wire.strip().split(b"\n\n")[-1][6:])
    assert last == {"error": {"code": 503, "message": "upstream fell over", "status": "UNAVAILABLE"}}
    client = sdk(lambda req: httpx.Response(200, content=wire, headers={"content-type": "text/event-stream"}))
    with pytest.raises(genai_errors.APIError) as e:
        for _ in client.models.generate_content_stream(model="m", contents="hi"):
            pass
    assert "fell over" in str(e.value)


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "err,status,name",
    [
        (GatewayError(ErrorKind.INVALID_REQUEST, "bad", param="contents[0].role"), 400, "INVALID_ARGUMENT"),
        (GatewayError(ErrorKind.AUTH, "no key"), 401, "UNAUTHENTICATED"),
        (GatewayError(ErrorKind.PERMISSION, "no"), 403, "PERMISSION_DENIED"),
        (GatewayError(ErrorKind.NOT_FOUND, "no model"), 404, "NOT_FOUND"),
        (GatewayError(ErrorKind.RATE_LIMITED, "slow down", retry_after=1.5), 429, "RESOURCE_EXHAUSTED"),
        (GatewayError(ErrorKind.INTERNAL, "oops"), 500, "INTERNAL"),
        (GatewayError(ErrorKind.UPSTREAM, "bad upstream"), 502, "UNAVAILABLE"),
        (GatewayError(ErrorKind.OVERLOADED, "busy"), 503, "UNAVAILABLE"),
        (GatewayError(ErrorKind.TIMEOUT, "late"), 504, "DEADLINE_EXCEEDED"),
    ],
)
def test_encode_error_shapes_and_sdk(err, status, name):
    reply = codec.encode_error(err)
    body = json.loads(reply.body)
    assert reply.status == status and body["error"]["code"] == status and body["error"]["status"] == name
    assert body["error"]["message"] == err.message
    if err.retry_after:
        assert reply.headers["retry-after"] == "2"
    if err.param:
        assert body["error"]["details"][0]["fieldViolations"][0]["field"] == err.param
    client = sdk(lambda req: httpx.Response(reply.status, content=reply.body, headers=reply.headers))
    with pytest.raises(genai_errors.APIError) as e:
        client.models.generate_content(model="m", contents="hi")
    assert e.value.code == status and e.value.status == name
    assert isinstance(e.value, genai_errors.ClientError if status < 500 else genai_errors.ServerError)


def test_decode_error_mapping():
    e = codec.decode_error(
        429,
        b'{"error":{"code":429,"message":"quota","status":"RESOURCE_EXHAUSTED","details":'
        b'[{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"7s"}]}}',
        {},
    )
    assert e.kind == ErrorKind.RATE_LIMITED and e.retry_after == 7.0 and e.message == "quota"
    e = codec.decode_error(503, b'{"error":{"message":"busy"}}', {"retry-after": "3"})
    assert e.kind == ErrorKind.OVERLOADED and e.retry_after == 3.0
    e = codec.decode_error(
        400,
        b'{"error":{"code":400,"message":"API key not valid","status":"INVALID_ARGUMENT",'
        b'"details":[{"reason":"API_KEY_INVALID"}]}}',
        {},
    )
    assert e.kind == ErrorKind.AUTH and e.status == 502
    e = codec.decode_error(
        400, b'{"error":{"code":400,"message":"bad part","status":"INVALID_ARGUMENT"}}', {}
    )
    assert e.kind == ErrorKind.INVALID_REQUEST and e.message == "bad part"
    e = codec.decode_error(500, b"<html>boom</html>", {})
    assert e.kind == ErrorKind.UPSTREAM and "boom" in e.message


# ---------------------------------------------------------------- upstream side


def test_encode_request_from_foreign_history():
    req = Request(
        model="alias",
        stream=True,
        system=[Text(text="sys")],
        max_tokens=50,
        top_k=4,
        seed=3,
        tools=[Tool(name="get_weather", parameters={"type": "object", "properties": {}})],
        tool_choice=ToolChoice(mode="required"),
        response_format=None,
        stop=["X"],
        messages=[
            Message(role="user", content=[Text(text="hi"), Image(data=PNG, media_type="image/png")]),
            Message(
                role="assistant",
                content=[
                    Reasoning(text="anthropic thought", signature="EqQBCkgIARABGAIiQ"),  # foreign: dropped
                    Reasoning(text="openai reasoning"),  # unsigned: dropped
                    Text(text="calling"),
                    ToolCall(id="toolu_1", name="get_weather", arguments='{"city":"P"}'),
                    ToolCall(id="toolu_2", name="get_time", arguments=""),
                ],
            ),
            Message(
                role="user",
                content=[
                    ToolResult(call_id="toolu_1", content=[Text(text="sunny")]),
                    ToolResult(call_id="toolu_2", name="get_time", content=[Text(text='{"h": 3}')]),
                ],
            ),
            Message(role="user", content=[Text(text="thanks")]),
        ],
    )
    up = codec.encode_request(req, "gemini-2.5-flash")
    assert up.path == "/v1beta/models/gemini-2.5-flash:streamGenerateContent" and up.query == {"alt": "sse"}
    body = json.loads(up.body)
    assert [c["role"] for c in body["contents"]] == ["user", "model", "user"]
    assert body["contents"][1]["parts"] == [
        {"text": "calling"},
        {"functionCall": {"id": "toolu_1", "name": "get_weather", "args": {"city": "P"}}},
        {"functionCall": {"id": "toolu_2", "name": "get_time", "args": {}}},
    ]
    assert body["contents"][2]["parts"] == [  # one user turn, keyed by name
        {"functionResponse": {"id": "toolu_1", "name": "get_weather", "response": {"output": "sunny"}}},
        {"functionResponse": {"id": "toolu_2", "name": "get_time", "response": {"h": 3}}},
        {"text": "thanks"},
    ]
    assert body["contents"][0]["parts"][1]["inlineData"]["mimeType"] == "image/png"
    assert body["toolConfig"] == {"functionCallingConfig": {"mode": "ANY"}}
    assert body["tools"][0]["functionDeclarations"][0]["parametersJsonSchema"] == {
        "type": "object",
        "properties": {},
    }
    assert body["generationConfig"] == {"topK": 4, "maxOutputTokens": 50, "seed": 3, "stopSequences": ["X"]}


def test_encode_request_reasoning_and_formats():
    from smolgate.canonical import ReasoningConfig, ResponseFormat

    base = Request(model="m", messages=[Message(role="user", content=[Text(text="q")])])
    for rc, want in [
        (ReasoningConfig(enabled=False), {"thinkingBudget": 0}),
        (ReasoningConfig(effort="high"), {"thinkingBudget": 4096, "includeThoughts": True}),
        (
            ReasoningConfig(budget_tokens=300, include_thoughts=False),
            {"thinkingBudget": 300, "includeThoughts": False},
        ),
    ]:
        base.reasoning = rc
        assert json.loads(codec.encode_request(base, "m").body)["generationConfig"]["thinkingConfig"] == want
    base.reasoning = None
    base.response_format = ResponseFormat(type="json_schema", schema={"type": "object"})
    gc = json.loads(codec.encode_request(base, "m").body)["generationConfig"]
    assert gc == {"responseMimeType": "application/json", "responseJsonSchema": {"type": "object"}}
    base.tool_choice, base.tools = ToolChoice(mode="tool", name="f"), [Tool(name="f")]
    assert json.loads(codec.encode_request(base, "m").body)["toolConfig"] == {
        "functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["f"]}
    }
    orphan = Request(model="m", messages=[Message(role="user", content=[ToolResult(call_id="zz")])])
    with pytest.raises(GatewayError):
        codec.encode_request(orphan, "m")


def test_decode_response():
    body = orjson.dumps(
        {
            "candidates": [
                {
                    "content": {
                        "role": "model",
                        "parts": [
                            {"text": "t", "thought": True, "thought_signature": "QQ=="},
                            {"text": "Hi"},
                            {"functionCall": {"name": "f", "args": {"a": 1}}},
                        ],
                    },
                    "finishReason": "STOP",
                }
            ],
            "usageMetadata": {
                "promptTokenCount": 5,
                "candidatesTokenCount": 3,
                "thoughtsTokenCount": 2,
                "totalTokenCount": 10,
                "cachedContentTokenCount": 1,
            },
            "modelVersion": "gemini-2.5",
            "responseId": "abc",
        }
    )
    r = codec.decode_response(body)
    assert r.id == "abc" and r.model == "gemini-2.5" and r.stop_reason == StopReason.TOOL_USE
    assert r.content[0] == Reasoning(text="t", signature="gemini:QQ==") and r.content[1] == Text(text="Hi")
    assert r.content[2].name == "f" and r.content[2].id.startswith("call_")
    assert r.usage == Usage(input_tokens=5, output_tokens=5, cached_tokens=1, reasoning_tokens=2)
    inclusive = codec.decode_response(
        b'{"candidates":[{"content":{"parts":[{"text":"x"}]},"finishReason":"MAX_TOKENS"}],'
        b'"usageMetadata":{"promptTokenCount":5,"candidatesTokenCount":3,'
        b'"thoughtsTokenCount":2,"totalTokenCount":8}}'
    )
    assert inclusive.usage.output_tokens == 3 and inclusive.stop_reason == StopReason.MAX_TOKENS
    blocked = codec.decode_response(
        b'{"promptFeedback":{"blockReason":"SAFETY"},"usageMetadata":{"promptTokenCount":4}}'
    )
    assert blocked.content == [] and blocked.stop_reason == StopReason.CONTENT_FILTER
    assert (
        codec.decode_response(b'{"candidates":[{"finishReason":"SAFETY"}]}').stop_reason
        == StopReason.CONTENT_FILTER
    )
    with pytest.raises(GatewayError) as e:
        codec.decode_response(b"nope")
    assert e.value.kind == ErrorKind.UPSTREAM
    with pytest.raises(GatewayError) as e:
        codec.decode_response(b'{"candidates":[{"content":{"parts":[{"text":7}]}}]}')
    assert e.value.kind == ErrorKind.UPSTREAM


UPSTREAM_STREAM = (
    b'data: {"candidates":[{"content":{"role":"model","parts":[{"text":"plan","thought":true}]},"index":0}],'
    b'"usageMetadata":{"promptTokenCount":9},"modelVersion":"gemini-2.5","responseId":"rid"}\r\n\r\n'
    b'data: {"candidates":[{"content":{"role":"model","parts":[{"text":"","thought":true,"thoughtSignature":"U0lH"}]}}]}\r\n\r\n'
    b'data: {"candidates":[{"content":{"role":"model","parts":[{"text":"H\xc3\xa9l"}]}}]}\r\n\r\n'
    b'data: {"candidates":[{"content":{"role":"model","parts":[{"text":"lo","thoughtSignature":"VFhU"}]}}]}\r\n\r\n'
    b'data: {"candidates":[{"content":{"role":"model","parts":[{"functionCall":{"name":"f","args":{"a":1}},'
    b'"thoughtSignature":"Q0FMTA=="}]},"finishReason":"STOP"}],'
    b'"usageMetadata":{"promptTokenCount":9,"candidatesTokenCount":4,"totalTokenCount":13}}\r\n\r\n'
)


def run_decoder(chunks) -> list:
    dec = codec.stream_decoder()
    events = []
    for c in chunks:
        events += dec.feed(c)
    return events + dec.close()


def normalise(events):  # generated call ids differ per run
    return [
        e
        if not isinstance(e, BlockStart) or not isinstance(e.block, ToolCall)
        else BlockStart(
            index=e.index,
            block=ToolCall(
                id="X", name=e.block.name, signature=e.block.signature, arguments=e.block.arguments
            ),
        )
        for e in events
    ]


def test_stream_decoder_events():
    ev = run_decoder([UPSTREAM_STREAM])
    assert ev[0] == MessageStart(id="rid", model="gemini-2.5", created=ev[0].created)
    assert normalise(ev[1:]) == [
        BlockStart(index=0, block=Reasoning()),
        ReasoningDelta(index=0, text="plan"),
        SignatureDelta(index=0, signature="gemini:U0lH"),
        BlockStop(index=0),
        BlockStart(index=1, block=Text(text="")),
        TextDelta(index=1, text="Hél"),
        TextDelta(index=1, text="lo"),
        BlockStop(index=1),
        BlockStart(index=2, block=Reasoning()),
        SignatureDelta(index=2, signature="gemini:VFhU"),
        BlockStop(index=2),
        BlockStart(index=3, block=ToolCall(id="X", name="f", arguments="", signature="Q0FMTA==")),
        ToolArgsDelta(index=3, json='{"a":1}'),
        BlockStop(index=3),
        MessageDelta(stop_reason=StopReason.TOOL_USE, usage=Usage(input_tokens=9, output_tokens=4)),
        MessageStop(),
    ]


def test_stream_decoder_split_at_every_byte():
    whole = normalise(run_decoder([UPSTREAM_STREAM]))[1:]
    assert (
        normalise(run_decoder([UPSTREAM_STREAM[i : i + 1] for i in range(len(UPSTREAM_STREAM))]))[1:] == whole
    )
    for cut in range(1, len(UPSTREAM_STREAM)):
        assert normalise(run_decoder([UPSTREAM_STREAM[:cut], UPSTREAM_STREAM[cut:]]))[1:] == whole


def test_stream_decoder_truncation_error_and_held_usage():
    ev = run_decoder([UPSTREAM_STREAM[:200]])
    assert isinstance(ev[-1], StreamError) and ev[-1].kind is ErrorKind.UPSTREAM
    ev = run_decoder(
        [
            UPSTREAM_STREAM.split(b"\r\n\r\n")[0] + b"\r\n\r\n",
            b'data: {"error":{"code":429,"message":"quota","status":"RESOURCE_EXHAUSTED"}}\r\n\r\n',
        ]
    )
    assert ev[-1] == StreamError(kind=ErrorKind.RATE_LIMITED, message="quota")
    # finishReason without usage: held until the usage-only chunk (or close)
    held = run_decoder(
        [
            b'data: {"candidates":[{"content":{"parts":[{"text":"a"}]},"finishReason":"MAX_TOKENS"}]}\n\n',
            b'data: {"usageMetadata":{"promptTokenCount":2,"candidatesTokenCount":1,"totalTokenCount":3}}\n\n',
        ]
    )
    assert held[-2] == MessageDelta(
        stop_reason=StopReason.MAX_TOKENS, usage=Usage(input_tokens=2, output_tokens=1)
    )
    at_close = run_decoder(
        [b'data: {"candidates":[{"content":{"parts":[{"text":"a"}]},"finishReason":"STOP"}]}\n\n']
    )
    assert isinstance(at_close[-1], MessageStop) and at_close[-2].stop_reason == StopReason.END_TURN
    blocked = run_decoder([b'data: {"promptFeedback":{"blockReason":"OTHER"}}\n\n'])
    assert blocked[-2].stop_reason == StopReason.CONTENT_FILTER


def test_upstream_stream_through_client_encoder_round_trip():
    """Gemini upstream → canonical → Gemini client keeps every signature on its part."""
    wire = encode_stream(run_decoder([UPSTREAM_STREAM]))
    docs = [json.loads(f[6:]) for f in wire.split(b"\n\n") if f]
    parts = [p for d in docs for p in d["candidates"][0]["content"]["parts"]]
    assert {"text": "", "thought": True, "thoughtSignature": "U0lH"} in parts
    assert {"text": "", "thoughtSignature": "VFhU"} in parts
    assert [p["thoughtSignature"] for p in parts if "functionCall" in p] == ["Q0FMTA=="]


# ---------------------------------------------------------------- fuzz

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=20,
)
KEYS = [
    "contents",
    "role",
    "parts",
    "text",
    "thought",
    "thoughtSignature",
    "inlineData",
    "inline_data",
    "mimeType",
    "mime_type",
    "data",
    "fileData",
    "fileUri",
    "functionCall",
    "functionResponse",
    "name",
    "args",
    "id",
    "response",
    "systemInstruction",
    "tools",
    "functionDeclarations",
    "parameters",
    "type",
    "properties",
    "toolConfig",
    "functionCallingConfig",
    "mode",
    "allowedFunctionNames",
    "generationConfig",
    "topK",
    "candidateCount",
    "responseSchema",
    "thinkingConfig",
    "thinkingBudget",
    "stopSequences",
    "nullable",
]
VALID = {
    "contents": [
        {
            "role": "user",
            "parts": [{"text": "hi"}, {"inlineData": {"mimeType": "image/png", "data": "AAAA"}}],
        },
        {"role": "model", "parts": [{"functionCall": {"name": "f", "args": {"a": 1}}}]},
        {"role": "user", "parts": [{"functionResponse": {"name": "f", "response": {"output": "x"}}}]},
    ],
    "systemInstruction": {"parts": [{"text": "s"}]},
    "tools": [{"functionDeclarations": [{"name": "f", "parameters": {"type": "OBJECT", "properties": {}}}]}],
    "toolConfig": {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["f"]}},
    "generationConfig": {
        "topK": 3,
        "thinkingConfig": {"thinkingBudget": 5},
        "responseSchema": {"type": "STRING", "nullable": True},
    },
}


def mutate(obj, path, value):
    if not path:
        return value
    if isinstance(obj, dict) and obj:
        keys = sorted(obj)
        k = keys[path[0] % len(keys)]
        return {**obj, k: mutate(obj[k], path[1:], value)}
    if isinstance(obj, list) and obj:
        i = path[0] % len(obj)
        return [*obj[:i], mutate(obj[i], path[1:], value), *obj[i + 1 :]]
    return value


def assert_only_gateway_errors(obj, ctx=CTX):
    try:
        r = codec.decode_request(json.dumps(obj).encode(), ctx)
    except GatewayError as e:
        assert 400 <= e.status < 500
    else:
        assert isinstance(r, Request)
        codec.encode_request(r, "m")  # every decoded request can be sent upstream (results carry names)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.integers(0, 50), max_size=6), json_values, st.sampled_from(KEYS), st.booleans())
@example(path=[0, 20, 0, 0, 0, 0], value="", key="id", insert=False)  # a functionResponse with an empty name
def test_fuzz_mutated_valid_request(path, value, key, insert):
    obj = mutate(VALID, path, {key: value} if insert else value)
    assert_only_gateway_errors(obj)
    assert_only_gateway_errors(obj, SCTX)


@settings(max_examples=200, deadline=None)
@given(json_values)
def test_fuzz_random_json(value):
    try:
        codec.decode_request(json.dumps(value).encode(), CTX)
    except GatewayError as e:
        assert e.status == 400
    with pytest.raises(GatewayError):
        codec.decode_request(b'{"contents": [', CTX)


# ---------------------------------------------------------------- the fake upstream, with the real SDK


@pytest.fixture(scope="module")
def fake():
    f = GeminiUpstream(api_key="gem-key").start()
    yield f
    f.stop()


def real_sdk(fake, key="gem-key", api_version="v1beta") -> genai.Client:
    return genai.Client(
        api_key=key, http_options=types.HttpOptions(base_url=fake.url, api_version=api_version)
    )


@pytest.mark.parametrize("api_version", ["v1", "v1beta"])
def test_fake_with_sdk_text_and_stream(fake, api_version):
    client = real_sdk(fake, api_version=api_version)
    r = client.models.generate_content(
        model="gemini-fake",
        contents="hello there",
        config=types.GenerateContentConfig(system_instruction="be nice"),
    )
    assert r.text == "You said: hello there | system=be nice images=0 turns=1"
    assert (
        r.candidates[0].finish_reason == types.FinishReason.STOP and r.usage_metadata.prompt_token_count == 4
    )
    assert fake.last.path == f"/{api_version}/models/gemini-fake:generateContent"
    chunks = list(client.models.generate_content_stream(model="gemini-fake", contents="hello there"))
    assert len(chunks) > 2 and "".join(c.text for c in chunks).startswith("You said: hello there")
    assert chunks[-1].usage_metadata.candidates_token_count > 0
    assert client.models.count_tokens(model="gemini-fake", contents="a b c").total_tokens == 3


def test_fake_with_sdk_tools_and_limits(fake):
    client = real_sdk(fake)
    tool = types.Tool(
        function_declarations=[
            types.FunctionDeclaration(
                name="get_weather",
                parameters=types.Schema(type="OBJECT", properties={"city": types.Schema(type="STRING")}),
            )
        ]
    )
    r = client.models.generate_content(
        model="m", contents="what's the weather?", config=types.GenerateContentConfig(tools=[tool])
    )
    assert r.function_calls[0].name == "get_weather" and r.function_calls[0].args == {"city": "Paris"}
    r = client.models.generate_content(
        model="m", contents="one two three four five", config=types.GenerateContentConfig(max_output_tokens=2)
    )
    assert r.candidates[0].finish_reason == types.FinishReason.MAX_TOKENS and r.text == "You said:"


def test_fake_auth_and_failures(fake):
    bad_key = real_sdk(
        fake, key="wrong"
    )  # keep the Client referenced: it closes its transport when collected
    with pytest.raises(genai_errors.ClientError) as e:
        bad_key.models.generate_content(model="m", contents="hi")
    assert e.value.code == 400 and e.value.status == "INVALID_ARGUMENT"
    r = httpx.post(f"{fake.url}/v1beta/models/m:generateContent", json={"contents": []})
    assert r.status_code == 403 and r.json()["error"]["status"] == "PERMISSION_DENIED"
    r = httpx.post(
        f"{fake.url}/v1beta/models/m:generateContent?key=gem-key",
        json={"contents": [{"parts": [{"text": "x"}]}]},
    )
    assert r.status_code == 200
    client = real_sdk(fake)
    with pytest.raises(genai_errors.ClientError) as e:
        client.models.generate_content(model="m", contents="FAIL_STATUS_429")
    assert e.value.code == 429 and e.value.status == "RESOURCE_EXHAUSTED"
    with pytest.raises(genai_errors.ServerError) as e:
        client.models.generate_content(model="m", contents="FAIL_STATUS_503")
    assert e.value.status == "UNAVAILABLE"
    with pytest.raises(genai_errors.APIError):
        for _ in client.models.generate_content_stream(model="m", contents="FAIL_MIDSTREAM please"):
            pass


def test_codec_upstream_side_against_fake(fake):
    """encode_request → fake (real HTTP) → decode_response / stream_decoder / decode_error."""
    req = Request(
        model="alias",
        messages=[Message(role="user", content=[Text(text="weather in Paris?")])],
        tools=[Tool(name="get_weather")],
    )

    def call(r: Request):
        up = codec.encode_request(r, "gemini-fake")
        return httpx.post(
            fake.url + up.path,
            params=up.query,
            content=up.body,
            headers={**up.headers, "x-goog-api-key": "gem-key"},
        )

    resp = codec.decode_response(call(req).content)
    call_block = resp.content[0]
    assert isinstance(call_block, ToolCall) and resp.stop_reason == StopReason.TOOL_USE
    assert json.loads(call_block.arguments) == {"city": "Paris"}
    req.messages += [
        Message(role="assistant", content=[call_block]),
        Message(role="user", content=[ToolResult(call_id=call_block.id, content=[Text(text="sunny")])]),
    ]
    from smolgate.canonical import link_tool_results

    link_tool_results(req.messages)
    assert codec.decode_response(call(req).content).content == [Text(text="The tool said: sunny")]
    sent = fake.last.json["contents"][2]["parts"][0]["functionResponse"]
    assert sent["name"] == "get_weather" and sent["response"] == {"output": "sunny"}

    stream_req = Request(
        model="a", stream=True, messages=[Message(role="user", content=[Text(text="hi there")])]
    )
    raw = call(stream_req)
    events = run_decoder([raw.content[i : i + 7] for i in range(0, len(raw.content), 7)])
    assert "".join(e.text for e in events if isinstance(e, TextDelta)).startswith("You said: hi there")
    assert isinstance(events[-1], MessageStop) and events[-2].usage.output_tokens > 0
    fail = call(
        Request(
            model="a", stream=True, messages=[Message(role="user", content=[Text(text="FAIL_MIDSTREAM")])]
        )
    )
    assert isinstance(run_decoder([fail.content])[-1], StreamError)
    bad = call(Request(model="a", messages=[Message(role="user", content=[Text(text="FAIL_STATUS_429")])]))
    err = codec.decode_error(bad.status_code, bad.content, bad.headers)
    assert err.kind == ErrorKind.RATE_LIMITED and err.retry_after == 1.0


@settings(max_examples=150, deadline=None)
@given(st.lists(json_values, max_size=4), st.integers(1, 40))
def test_fuzz_stream_decoder_never_raises(docs, step):
    wire = b"".join(b"data: " + json.dumps(d).encode() + b"\n\n" for d in docs)
    events = run_decoder([wire[i : i + step] for i in range(0, len(wire), step)])
    assert isinstance(events[-1], (MessageStop, StreamError)) or not events


def test_fake_slow_streams_incrementally(fake):
    import time

    up = codec.encode_request(
        Request(model="a", stream=True, messages=[Message(role="user", content=[Text(text="SLOW please")])]),
        "gemini-fake",
    )
    t0 = time.monotonic()
    with httpx.stream(
        "POST", fake.url + up.path, params=up.query, content=up.body, headers={"x-goog-api-key": "gem-key"}
    ) as r:
        stamps = [time.monotonic() - t0 for _ in r.iter_raw()]
    assert stamps[0] < 0.2 and stamps[-1] > 1.0  # first frame at once, the rest paced
