"""The real anthropic SDK against our bytes and against the fake upstream (real HTTP on 127.0.0.1)."""

from __future__ import annotations

import time

import anthropic
import httpx
import httpx2
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
    ReasoningDelta,
    Request,
    Response,
    StopReason,
    StreamError,
    Text,
    TextDelta,
    Tool,
    ToolArgsDelta,
    ToolCall,
    ToolResult,
    Usage,
)
from smolgate.errors import ErrorKind, GatewayError
from smolgate.protocols.anthropic import (
    decode_count_tokens_request,
    encode_count_tokens,
    encode_model,
    encode_models,
)
from smolgate.protocols.base import ModelInfo, RequestContext
from tests.fakes.anthropic_upstream import AnthropicUpstream
from tests.protocols.anthropic_helpers import FULL_EVENTS, base, codec

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
        StreamError(kind=ErrorKind.OVERLOADED, message="Overloaded"),
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
    assert isinstance(evs[-1], StreamError) and evs[-1].kind is ErrorKind.OVERLOADED
    with pytest.raises(GatewayError) as e:
        call_fake(
            fake, Request(model="a", messages=[Message(role="user", content=[Text(text="FAIL_STATUS_529")])])
        )
    assert e.value.kind is ErrorKind.OVERLOADED and "scripted" in e.value.message


async def test_async_sdk_stream_helper_and_fake_models(fake):
    m = Mock(stream_reply(FULL_EVENTS))
    client = anthropic.AsyncAnthropic(
        api_key="k",
        base_url="http://gw.test",
        max_retries=0,
        http_client=httpx2.AsyncClient(transport=httpx2.MockTransport(m)),
    )
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
