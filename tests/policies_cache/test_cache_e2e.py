"""The response cache end to end: official SDKs against a real gateway in front of the fake upstreams (real HTTP
servers on 127.0.0.1) that count what reaches them, and the SQLite ledger read back through the admin API."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import anthropic
import httpx
import ollama
import openai
import pytest
from google import genai
from google.genai import types

from tests.fakes.harness import FakeUpstream
from tests.gateway_server import GatewayServer

from .conftest import ledger_row, providers, served_by_metric

KEY_A, KEY_B, KEY_ALL, KEY_OFF = "sg-test-key-a", "sg-test-key-b", "sg-test-key-all", "sg-test-key-off"


@pytest.fixture(scope="module")
def gw(fakes: dict[str, FakeUpstream], tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayServer]:
    db = tmp_path_factory.mktemp("ledger") / "ledger.db"
    cfg = providers({k: f.url for k, f in fakes.items()}) + (
        "models:\n"
        "  - {name: chat, targets: [{provider: up-openai, model: gpt-fake}]}\n"
        "  - {name: claude, targets: [{provider: up-anthropic, model: claude-fake}]}\n"
        "  - {name: gem, targets: [{provider: up-gemini, model: gemini-fake}]}\n"
        "  - {name: llama, targets: [{provider: up-ollama, model: llama-fake}]}\n"
        "  - {name: chat-all, targets: [{provider: up-openai, model: gpt-fake}], cache: {requests: all}}\n"
        "  - {name: chat-off, targets: [{provider: up-openai, model: gpt-fake}], cache: {enabled: false}}\n"
        "  - {name: chat-private, targets: [{provider: up-openai, model: gpt-fake}], privacy: redact}\n"
        f"keys: [{{key: {KEY_A}, name: a}}, {{key: {KEY_B}, name: b}}, {{key: {KEY_ALL}, cache: all}},\n"
        f"       {{key: {KEY_OFF}, name: never, cache: 'off'}}]\n"
        "cache: {enabled: true, ttl: 600}\n"
        f"store: 'sqlite:///{db}'\n"
        "ledger: {flush_interval: 0.05}\n"
        "retry: {attempts: 2, deadline: 20}\n"
    )
    with GatewayServer(cfg) as g:
        yield g


def _oa(gw: GatewayServer, key: str = KEY_A) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.url + "/v1", api_key=key, max_retries=0, timeout=30)


def _prompt() -> str:
    return f"tell me about {uuid.uuid4().hex[:10]} please"


def _chat(gw: GatewayServer, prompt: str, key: str = KEY_A, model: str = "chat", **kw: object):  # type: ignore[no-untyped-def]
    """(text, x-smolgate-cache header, x-request-id) of one OpenAI Chat call, whole or streamed."""
    raw = _oa(gw, key).chat.completions.with_raw_response.create(
        model=model, messages=[{"role": "user", "content": prompt}], **kw
    )
    body = raw.parse()
    if kw.get("stream"):
        text = "".join(c.choices[0].delta.content or "" for c in body if c.choices)
    else:
        text = body.choices[0].message.content
    return text, raw.headers.get("x-smolgate-cache"), raw.headers["x-request-id"]


def test_a_repeated_deterministic_request_is_answered_from_the_cache(gw, fakes):
    p, before = _prompt(), len(fakes["openai"].requests)
    text1, h1, rid1 = _chat(gw, p, temperature=0)
    text2, h2, rid2 = _chat(gw, p, temperature=0)
    assert (h1, h2) == ("miss", "hit")
    assert text1 == text2 and p in text1  # the fake echoes the prompt
    assert len(fakes["openai"].requests) - before == 1
    miss, hit = ledger_row(gw.url, rid1), ledger_row(gw.url, rid2)
    assert miss["served_by"] is None and miss["provider"] == "up-openai" and miss["input_tokens"] > 0
    assert hit["served_by"] == "cache" and hit["cost_usd"] == 0
    assert (hit["input_tokens"], hit["output_tokens"], hit["provider"]) == (0, 0, None)
    assert served_by_metric(gw.url, "chat", "cache") >= 1


def test_requests_under_a_privacy_policy_are_never_cached(gw, fakes):
    # the alias's policy (not only the key's or the request's): its answers hold what the policy kept local
    p, before = _prompt() + " mail me at ann@example.com", len(fakes["openai"].requests)
    text1, h1, _ = _chat(gw, p, model="chat-private", temperature=0)
    text2, h2, _ = _chat(gw, p, model="chat-private", temperature=0)
    assert h1 is None and h2 is None and "ann@example.com" in text1 and text1 == text2
    assert len(fakes["openai"].requests) - before == 2
    assert "ann@example.com" not in str(fakes["openai"].requests[-1])


def test_a_whole_answer_serves_a_stream_and_a_stream_serves_a_whole_answer(gw, fakes):
    p, before = _prompt(), len(fakes["openai"].requests)
    whole, _, _ = _chat(gw, p, seed=42)
    streamed, h, rid = _chat(gw, p, seed=42, stream=True, stream_options={"include_usage": True})
    assert (streamed, h) == (whole, "hit")
    assert ledger_row(gw.url, rid)["stream"] is True
    q = _prompt()
    streamed, h1, _ = _chat(gw, q, temperature=0, stream=True)
    whole, h2, _ = _chat(gw, q, temperature=0)
    assert (h1, h2, whole) == ("miss", "hit", streamed)
    assert len(fakes["openai"].requests) - before == 2


def test_anthropic_clients_stream_a_cached_answer_in_their_protocol(gw, fakes):
    c = anthropic.Anthropic(base_url=gw.url, api_key=KEY_A, max_retries=0, timeout=30)
    p, before = _prompt(), len(fakes["anthropic"].requests)
    msgs = [{"role": "user", "content": p}]
    kw = {"model": "claude", "max_tokens": 64, "messages": msgs, "extra_body": {"temperature": 0}}
    first = c.messages.create(**kw)  # type: ignore[call-overload]
    raw = c.messages.with_raw_response.create(**kw, stream=True)  # type: ignore[call-overload]
    assert raw.headers["x-smolgate-cache"] == "hit"
    kinds, text = [], ""
    for ev in raw.parse():
        kinds.append(ev.type)
        if ev.type == "content_block_delta":
            text += ev.delta.text
    assert text == first.content[0].text
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    assert len(fakes["anthropic"].requests) - before == 1


def test_gemini_ollama_and_responses_clients_hit_too(gw, fakes):
    g = genai.Client(api_key=KEY_A, http_options=types.HttpOptions(base_url=gw.url))
    p, before = _prompt(), len(fakes["gemini"].requests)
    cfg = types.GenerateContentConfig(temperature=0)
    texts = [g.models.generate_content(model="gem", contents=p, config=cfg).text for _ in range(2)]
    streamed = "".join(
        c.text or "" for c in g.models.generate_content_stream(model="gem", contents=p, config=cfg)
    )
    assert texts[0] == texts[1] == streamed and len(fakes["gemini"].requests) - before == 1

    o = ollama.Client(host=gw.url, headers={"authorization": f"Bearer {KEY_A}"}, timeout=30)
    p, before = _prompt(), len(fakes["ollama"].requests)
    msgs = [{"role": "user", "content": p}]
    texts = [
        o.chat(model="llama", messages=msgs, options={"temperature": 0}).message.content for _ in range(2)
    ]
    assert texts[0] == texts[1] and len(fakes["ollama"].requests) - before == 1

    p, before = _prompt(), len(fakes["openai"].requests)
    r1 = _oa(gw).responses.create(model="chat", input=p, temperature=0)
    r2 = _oa(gw).responses.create(model="chat", input=p, temperature=0)
    assert r1.output_text == r2.output_text and r1.id != r2.id
    assert len(fakes["openai"].requests) - before == 1


def test_only_deterministic_requests_unless_the_alias_opts_in(gw, fakes):
    p, before = _prompt(), len(fakes["openai"].requests)
    _, h1, _ = _chat(gw, p, temperature=0.7)
    _, h2, _ = _chat(gw, p, temperature=0.7)
    assert (h1, h2) == (None, None)  # not consulted at all
    _, h3, _ = _chat(gw, p, model="chat-all", temperature=0.7)
    _, h4, _ = _chat(gw, p, model="chat-all", temperature=0.7)
    assert (h3, h4) == ("miss", "hit")
    _, h5, _ = _chat(gw, p, model="chat-off", temperature=0)
    _, h6, _ = _chat(gw, p, model="chat-off", temperature=0)
    assert (h5, h6) == (None, None)
    assert len(fakes["openai"].requests) - before == 5


def test_the_client_can_bypass_the_cache(gw, fakes):
    p, before = _prompt(), len(fakes["openai"].requests)
    _chat(gw, p, temperature=0)
    _, h1, _ = _chat(gw, p, temperature=0, extra_headers={"x-smolgate-cache": "no-cache"})
    _, h2, _ = _chat(gw, p, temperature=0)
    assert (h1, h2) == ("bypass", "hit")
    q = _prompt()
    _, h3, _ = _chat(gw, q, temperature=0, extra_headers={"x-smolgate-cache": "no-store"})
    _, h4, _ = _chat(gw, q, temperature=0)
    assert (h3, h4) == ("bypass", "miss")  # no-store kept nothing
    assert len(fakes["openai"].requests) - before == 4


def test_one_keys_answers_are_never_served_to_another_key(gw, fakes):
    p = _prompt()
    _, ha, _ = _chat(gw, p, key=KEY_A, temperature=0)
    _, hb, _ = _chat(gw, p, key=KEY_B, temperature=0)
    _, hb2, _ = _chat(gw, p, key=KEY_B, temperature=0)
    assert (ha, hb, hb2) == ("miss", "miss", "hit")


def test_everything_that_changes_the_answer_is_in_the_key(gw, fakes):
    p, before = _prompt(), len(fakes["openai"].requests)
    tool = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}
    variants: list[dict[str, object]] = [
        {},
        {"max_tokens": 5},
        {"stop": ["zz"]},
        {"tools": [tool]},
        {"response_format": {"type": "json_object"}},
        {"top_p": 0.5},
    ]
    headers = [_chat(gw, p, temperature=0, **v)[1] for v in variants]
    assert headers == ["miss"] * len(variants)
    assert len(fakes["openai"].requests) - before == len(variants)


def test_errors_are_never_cached(gw, fakes):
    before = len(fakes["openai"].requests)
    for _ in range(2):
        with pytest.raises(openai.BadRequestError):
            _chat(gw, f"FAIL_STATUS_400 {_prompt()}", temperature=0)
    p = f"FAIL_MIDSTREAM {_prompt()}"
    for _ in range(2):
        with pytest.raises(openai.APIError):
            _chat(gw, p, temperature=0, stream=True)
    assert len(fakes["openai"].requests) - before == 4
    with httpx.Client(base_url=gw.url, timeout=30) as c:  # an unknown model: nothing to look up
        r = c.post(
            "/v1/chat/completions",
            headers={"authorization": f"Bearer {KEY_A}"},
            json={"model": "nope", "temperature": 0, "messages": [{"role": "user", "content": "x"}]},
        )
        assert r.status_code == 404 and "x-smolgate-cache" not in r.headers


def test_replicas_share_the_cache_through_redis(fakes, tmp_path):
    from tests.pool.conftest import RedisServer

    (tmp_path / "redis").mkdir()
    srv = RedisServer(tmp_path / "redis").start()
    cfg = providers({k: f.url for k, f in fakes.items()}) + (
        "models:\n  - {name: chat, targets: [{provider: up-openai, model: gpt-fake}]}\n"
        f"state: '{srv.url}'\ncache: {{enabled: true}}\nledger: {{enabled: false}}\n"
    )
    try:
        with GatewayServer(cfg) as a, GatewayServer(cfg) as b:
            p, before = _prompt(), len(fakes["openai"].requests)
            text_a, ha, _ = _chat(a, p, key="open", temperature=0, stream=True)
            text_b, hb, _ = _chat(b, p, key="open", temperature=0)
            assert (ha, hb, text_b) == ("miss", "hit", text_a)
            assert len(fakes["openai"].requests) - before == 1
    finally:
        srv.stop()


def test_a_cached_tool_call_replays_as_a_streamed_tool_call(gw, fakes):
    tool = {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
    p, before = f"weather {_prompt()}", len(fakes["openai"].requests)
    c = _oa(gw)
    msgs = [{"role": "user", "content": p}]
    whole = c.chat.completions.create(model="chat", messages=msgs, tools=[tool], temperature=0)  # type: ignore[arg-type]
    call = whole.choices[0].message.tool_calls[0]  # type: ignore[index]
    args, name = "", None
    for chunk in c.chat.completions.create(
        model="chat", messages=msgs, tools=[tool], temperature=0, stream=True
    ):  # type: ignore[arg-type]
        for tc in (chunk.choices[0].delta.tool_calls or []) if chunk.choices else []:
            name = tc.function.name or name  # type: ignore[union-attr]
            args += tc.function.arguments or ""  # type: ignore[union-attr]
    assert (name, args) == (call.function.name, call.function.arguments)  # type: ignore[union-attr]
    assert len(fakes["openai"].requests) - before == 1

    q = _prompt()  # and a Responses client's stream, from a whole answer
    first = c.responses.create(model="chat", input=q, temperature=0)
    text = "".join(
        ev.delta
        for ev in c.responses.create(model="chat", input=q, temperature=0, stream=True)
        if ev.type == "response.output_text.delta"
    )
    assert text == first.output_text
    assert len(fakes["openai"].requests) - before == 2


def test_a_config_key_opts_in_or_out(gw, fakes):
    p = _prompt()
    heads = [_chat(gw, p, key=KEY_ALL, temperature=0.9)[1] for _ in range(2)]
    assert heads == ["miss", "hit"]  # every request of this key
    assert _chat(gw, p, key=KEY_ALL, model="chat-off", temperature=0)[1] is None  # the alias said never
    assert [_chat(gw, p, key=KEY_OFF, temperature=0)[1] for _ in range(2)] == [None, None]
