"""Prompt caching: Anthropic cache_control markers and request features survive Anthropic→Anthropic,
`prompt_caching: auto` marks breakpoints for other clients, and cache reads/writes reach every client's usage."""

from __future__ import annotations

import httpx
import orjson
import pytest

from smolgate import caching
from smolgate.canonical import (
    Message,
    MessageDelta,
    MessageStart,
    MessageStop,
    Request,
    Response,
    Text,
    Tool,
    ToolCall,
    ToolResult,
    Usage,
)
from smolgate.protocols import codec
from smolgate.protocols.base import RequestContext
from smolgate.protocols.openai_common import (
    chat_usage,
    responses_usage,
    usage_from_chat,
    usage_from_responses,
)
from tests.fakes.anthropic_upstream import AnthropicUpstream
from tests.gateway_server import GatewayServer

ANT = codec("anthropic")
EPH = {"type": "ephemeral"}


def claude_code_body() -> dict:
    return {
        "model": "m",
        "max_tokens": 100,
        "stream": False,
        "system": [
            {"type": "text", "text": "x-anthropic-billing-header: cc_version=2.1.197.66a;"},
            {"type": "text", "text": "You are Claude Code.", "cache_control": EPH},
            {"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral", "ttl": "1h"}},
        ],
        "tools": [
            {"name": "Read", "input_schema": {"type": "object"}},
            {"name": "Write", "input_schema": {"type": "object"}, "cache_control": EPH},
        ],
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "hi"}]},
            {
                "role": "assistant",
                "content": [{"type": "tool_use", "id": "toolu_1", "name": "Read", "input": {}}],
            },
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": "toolu_1",
                        "content": "ok",
                        "cache_control": {"type": "ephemeral", "scope": "global"},
                    }
                ],
            },
        ],
        "context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
        "service_tier": "auto",
        "container": "cntr_1",
        "output_config": {"effort": "high", "task_budget": {"total": 5}},
        "metadata": {"user_id": "u1"},
    }


def test_anthropic_to_anthropic_keeps_markers_and_request_features():
    body = claude_code_body()
    req = ANT.decode_request(orjson.dumps(body), RequestContext())
    sent = orjson.loads(ANT.encode_request(req, "m").body)
    assert sent["system"] == body["system"]  # billing line first, markers and ttl as sent
    assert sent["tools"][1]["cache_control"] == EPH and "cache_control" not in sent["tools"][0]
    assert sent["messages"][2]["content"][0]["cache_control"] == {"type": "ephemeral", "scope": "global"}
    for key in ("context_management", "service_tier", "container", "metadata"):
        assert sent[key] == body[key], key
    assert sent["output_config"] == {"effort": "high", "task_budget": {"total": 5}}


def test_unmarked_system_stays_a_string_and_markers_are_capped_at_four():
    body = {"model": "m", "max_tokens": 5, "system": "sys", "messages": [{"role": "user", "content": "hi"}]}
    assert (
        orjson.loads(ANT.encode_request(ANT.decode_request(orjson.dumps(body), RequestContext()), "m").body)[
            "system"
        ]
        == "sys"
    )
    req = Request(
        model="m",
        system=[Text(text="s", cache="ephemeral")],
        tools=[Tool(name="t", cache="ephemeral")],
        messages=[
            Message(role="user", content=[Text(text=f"u{i}", cache="ephemeral")])
            if i % 2 == 0
            else Message(role="assistant", content=[Text(text=f"a{i}")])
            for i in range(7)
        ],
    )
    sent = orjson.loads(ANT.encode_request(req, "m").body)
    assert (
        "cache_control" not in sent["tools"][0] and "cache_control" not in sent["system"][0]
    )  # oldest dropped
    assert sum("cache_control" in b for m in sent["messages"] for b in m["content"]) == 4


def _req(system: list[Text], turns: int) -> Request:
    msgs = []
    for i in range(turns):
        msgs.append(
            Message(
                role="user",
                content=[Text(text=f"question {i}")]
                if i == 0
                else [ToolResult(call_id=f"c{i}", content=[Text(text="r")])],
            )
        )
        msgs.append(Message(role="assistant", content=[ToolCall(id=f"c{i + 1}", name="t")]))
    return Request(model="m", system=system, tools=[Tool(name="a"), Tool(name="b")], messages=msgs)


def test_inject_marks_system_tools_and_the_last_two_user_turns():
    req = _req([Text(text="one"), Text(text="two")], 4)
    out = caching.inject(req)
    assert [t.cache for t in out.system] == [None, "ephemeral"] and [t.cache for t in out.tools] == [
        None,
        "ephemeral",
    ]
    marked = [i for i, m in enumerate(out.messages) for b in m.content if getattr(b, "cache", None)]
    assert marked == [4, 6]
    assert [t.text for t in out.system] == ["one", "two"]  # the prompt's text never changes
    sent = orjson.loads(ANT.encode_request(out, "m").body)
    assert sum("cache_control" in b for m in sent["messages"] for b in m["content"]) + 2 == 4
    assert caching.inject(out) is out  # markers present (an Anthropic client's own): left alone
    assert caching.has_markers(out) and not caching.has_markers(req)


def test_usage_fields_in_every_client_protocol():
    u = Usage(input_tokens=1000, output_tokens=7, cached_tokens=600, cache_creation_tokens=300)
    assert chat_usage(u)["prompt_tokens"] == 1000
    assert chat_usage(u)["prompt_tokens_details"] == {"cached_tokens": 600, "cache_write_tokens": 300}
    assert usage_from_chat(chat_usage(u)) == u
    assert responses_usage(u)["input_tokens_details"] == {"cached_tokens": 600, "cache_write_tokens": 300}
    assert usage_from_responses(responses_usage(u)) == u
    resp = Response(id="r", model="m", content=[Text(text="x")], usage=u)
    base = Request(model="m", messages=[])
    a = orjson.loads(ANT.encode_response(resp, base))["usage"]
    assert (a["input_tokens"], a["cache_read_input_tokens"], a["cache_creation_input_tokens"]) == (
        100,
        600,
        300,
    )
    g = orjson.loads(codec("gemini").encode_response(resp, base))["usageMetadata"]
    assert g["promptTokenCount"] == 1000 and g["cachedContentTokenCount"] == 600
    # streamed: the final usage carries the same numbers
    events = [MessageStart(id="r", model="m"), MessageDelta(usage=u), MessageStop()]
    enc = codec("anthropic").stream_encoder(base)
    wire = b"".join(enc.feed(e) for e in events)
    assert b'"cache_read_input_tokens":600' in wire and b'"input_tokens":100' in wire
    oreq = codec("openai").decode_request(
        orjson.dumps(
            {
                "model": "m",
                "stream": True,
                "messages": [{"role": "user", "content": "x"}],
                "stream_options": {"include_usage": True},
            }
        ),
        RequestContext(),
    )
    enc = codec("openai").stream_encoder(oreq)
    wire = b"".join(enc.feed(e) for e in events)
    assert b'"cached_tokens":600' in wire and b'"cache_write_tokens":300' in wire


# ---------------------------------------------------------------- through a gateway


@pytest.fixture(scope="module")
def gw():
    up = AnthropicUpstream(api_key="k-a").start()
    cfg = f"""
providers:
  - {{name: ant, protocol: anthropic, base_url: "{up.url}", accounts: [{{api_key: k-a}}]}}
models:
  - {{name: cached, prompt_caching: auto, targets: [{{provider: ant, model: claude-fake}}]}}
  - {{name: plain, targets: [{{provider: ant, model: claude-fake}}]}}
"""
    with GatewayServer(cfg) as g:
        g.up = up  # type: ignore[attr-defined]
        yield g
    up.stop()


def _chat(gw, model: str, turns: list[str], stream: bool = False) -> httpx.Response:
    msgs = [{"role": "system", "content": "You are a careful assistant. " * 20}]
    for i, t in enumerate(turns):
        msgs.append({"role": "user", "content": t})
        if i < len(turns) - 1:
            msgs.append({"role": "assistant", "content": "noted " * 10})
    body = {
        "model": model,
        "messages": msgs,
        "stream": stream,
        "tools": [
            {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}
        ],
    }
    if stream:
        body["stream_options"] = {"include_usage": True}
    return httpx.post(
        gw.url + "/v1/chat/completions", json=body, headers={"authorization": "Bearer x"}, timeout=20
    )


def _last_usage(r: httpx.Response) -> dict:
    if r.headers["content-type"].startswith("text/event-stream"):
        chunks = [orjson.loads(line[6:]) for line in r.text.splitlines() if line.startswith("data: {")]
        return next(c["usage"] for c in reversed(chunks) if c.get("usage"))
    return r.json()["usage"]


@pytest.mark.parametrize("stream", [False, True])
def test_openai_client_to_anthropic_gets_breakpoints_and_exact_cache_usage(gw, stream):
    up = gw.up
    up.reset()
    first = _chat(gw, "cached", [f"first question {stream}"], stream)
    second = _chat(gw, "cached", [f"first question {stream}", "second question"], stream)
    assert first.status_code == second.status_code == 200
    sent = up.requests[-1].json
    assert sent["system"][-1]["cache_control"] == EPH and sent["tools"][-1]["cache_control"] == EPH
    users = [m for m in sent["messages"] if m["role"] == "user"]
    assert [("cache_control" in u["content"][-1]) for u in users] == [True, True]
    reported = up.usages[-1]
    assert reported["cache_read_input_tokens"] > 0  # the first turn's prefix was read back
    u = _last_usage(second)
    assert u["prompt_tokens_details"]["cached_tokens"] == reported["cache_read_input_tokens"]
    assert u["prompt_tokens_details"]["cache_write_tokens"] == reported["cache_creation_input_tokens"]
    assert u["prompt_tokens"] == sum(reported.values())


def test_without_prompt_caching_nothing_is_marked_and_gemini_sees_cached_reads(gw):
    up = gw.up
    up.reset()
    assert _chat(gw, "plain", ["hello"]).status_code == 200
    assert "cache_control" not in orjson.dumps(up.requests[-1].json).decode()
    body = {
        "systemInstruction": {"parts": [{"text": "You are terse. " * 30}]},
        "contents": [{"role": "user", "parts": [{"text": "hello gemini"}]}],
    }
    for _ in range(2):
        r = httpx.post(
            gw.url + "/v1beta/models/cached:generateContent",
            json=body,
            headers={"x-goog-api-key": "x"},
            timeout=20,
        )
        assert r.status_code == 200, r.text
    reported = up.usages[-1]
    meta = r.json()["usageMetadata"]
    assert meta["cachedContentTokenCount"] == reported["cache_read_input_tokens"] > 0
    assert meta["promptTokenCount"] == sum(reported.values())


def test_mid_conversation_system_messages_keep_their_place_toward_anthropic():
    body = {
        "model": "m",
        "max_tokens": 5,
        "system": [{"type": "text", "text": "main", "cache_control": EPH}],
        "messages": [
            {"role": "user", "content": "hi"},
            {"role": "system", "content": "agents: a, b"},
            {"role": "assistant", "content": "ok"},
            {"role": "user", "content": "go"},
            {"role": "system", "content": [{"type": "text", "text": "late", "cache_control": EPH}]},
        ],
    }
    req = ANT.decode_request(orjson.dumps(body), RequestContext())
    assert [t.text for t in req.system] == ["main", "agents: a, b", "late"]  # other upstreams: hoisted
    sent = orjson.loads(ANT.encode_request(req, "m").body)
    assert sent["system"] == body["system"]  # unchanged from turn to turn: the cached prefix holds
    assert [m["role"] for m in sent["messages"]] == ["user", "system", "assistant", "user", "system"]
    assert sent["messages"][1]["content"] == [{"type": "text", "text": "agents: a, b"}]
    assert sent["messages"][4]["content"] == [{"type": "text", "text": "late", "cache_control": EPH}]
    oai = orjson.loads(codec("openai").encode_request(req, "m").body)["messages"]
    assert oai[0] == {"role": "system", "content": "main\n\nagents: a, b\n\nlate"} and len(oai) == 4
