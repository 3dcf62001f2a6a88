"""`/admin/requests` (the recent-requests ring) and the playground's wire capture, with the official SDKs as
clients and real fake upstreams in other protocols: the capture shows the upstream request in the upstream's
protocol with its key redacted; only a console session with its CSRF header can ask for a capture."""

from __future__ import annotations

import json
from contextlib import closing

import anthropic
import httpx
import openai
import pytest

from smolgate.console.sessions import COOKIE
from tests.console_api.conftest import console_config, signed_in
from tests.gateway.conftest import UPSTREAM_KEYS
from tests.gateway_server import GatewayServer


def playground(gw: GatewayServer) -> tuple[httpx.Client, dict[str, str]]:
    """A signed-in client and the headers the playground sends on a client route."""
    c, csrf = signed_in(gw)
    token = c.cookies[COOKIE]
    return c, {"cookie": f"{COOKIE}={token}", "x-smolgate-csrf": csrf, "x-smolgate-wire": "capture"}


def no_secret(obj: object) -> str:
    text = json.dumps(obj)
    for key in UPSTREAM_KEYS.values():
        assert key not in text, key
    return text


@pytest.mark.parametrize("stream", [False, True])
def test_an_anthropic_request_to_an_openai_upstream_is_captured_both_ways(gateway, upstreams, stream):
    c, headers = playground(gateway)
    with closing(c):
        sdk = anthropic.Anthropic(base_url=gateway.url, api_key="sk-ant-unused", default_headers=headers)
        args = {"model": "via-openai", "max_tokens": 64, "messages": [{"role": "user", "content": "hello"}]}
        if stream:
            with sdk.messages.stream(**args) as s:
                text = s.get_final_text()
                rid = s.response.headers["x-request-id"]  # type: ignore[attr-defined]
        else:
            raw = sdk.messages.with_raw_response.create(**args)
            text, rid = raw.parse().content[0].text, raw.headers["x-request-id"]  # type: ignore[union-attr]
        assert text
        wire = c.get(f"/admin/wire/{rid}").json()
        detail = c.get(f"/admin/requests/{rid}").json()
    no_secret(wire)
    req = wire["client_request"]
    assert req["method"] == "POST" and req["path"] == "/v1/messages"
    assert req["headers"]["cookie"] == req["headers"]["x-smolgate-csrf"] == "***"  # its credentials too
    assert "***" in (req["headers"].get("x-api-key"), req["headers"].get("authorization"))
    assert json.loads(req["body"]["text"])["model"] == "via-openai"
    [up] = wire["upstream"]
    assert up["url"] == upstreams["openai"].url + "/v1/chat/completions"
    assert up["method"] == "POST" and up["headers"]["authorization"] == "***"
    sent = json.loads(up["body"]["text"])  # what smolgate sent: OpenAI Chat, not Anthropic Messages
    assert sent["model"] == "openai-model" and sent["messages"][-1]["content"] in (
        "hello",
        [{"type": "text", "text": "hello"}],
    )
    assert sent.get("stream", False) is stream
    assert up["status"] == 200 and not up["body"]["base64"] and not up["response_body"]["truncated"]
    if stream:
        assert "data: [DONE]" in up["response_body"]["text"]  # the upstream's own SSE, raw
        assert "event: message_start" in wire["client_response"]["body"]["text"]  # what the client got
    else:
        assert json.loads(up["response_body"]["text"])["object"] == "chat.completion"
        assert json.loads(wire["client_response"]["body"]["text"])["type"] == "message"
    assert wire["client_response"]["status"] == 200
    # the request's own view carries the same capture, and says who and how
    assert detail["wire"] == wire
    assert detail["client_protocol"] == "anthropic" and detail["alias"] == "via-openai"
    assert detail["key_id"] == "console" and detail["status"] == 200 and detail["stream"] is stream
    [attempt] = detail["attempts"]
    assert attempt["provider"] == "up-openai" and attempt["upstream_protocol"] == "openai"
    assert detail["usage"]["output_tokens"] > 0 and "bodies" not in detail


def test_a_gemini_upstream_key_is_redacted_in_the_capture(gateway):
    c, headers = playground(gateway)
    with closing(c):
        sdk = openai.OpenAI(base_url=gateway.url + "/v1", api_key="sk-unused", default_headers=headers)
        raw = sdk.chat.completions.with_raw_response.create(
            model="via-gemini", messages=[{"role": "user", "content": "hi"}]
        )
        wire = c.get(f"/admin/wire/{raw.headers['x-request-id']}").json()
    text = no_secret(wire)
    [up] = wire["upstream"]
    assert ":generateContent" in up["url"] and up["headers"]["x-goog-api-key"] == "***"
    assert "contents" in json.loads(up["body"]["text"])  # Gemini's wire format
    assert wire["client_request"]["headers"]["authorization"] == "***" and "sk-unused" not in text


def test_only_a_console_session_with_its_csrf_token_can_ask_for_a_capture(gateway):
    c, headers = playground(gateway)
    chat = {"model": "via-openai", "messages": [{"role": "user", "content": "hi"}]}
    with closing(c):
        tries = [
            {"x-smolgate-wire": "capture"},  # an ordinary client (the gateway is open: it is served)
            {k: v for k, v in headers.items() if k != "x-smolgate-csrf"},  # the cookie without its token
            {**headers, "x-smolgate-csrf": "forged"},
            {k: v for k, v in headers.items() if k != "x-smolgate-wire"},  # a session that did not ask
        ]
        for h in tries:
            r = httpx.post(gateway.url + "/v1/chat/completions", json=chat, headers=h)
            assert r.status_code == 200, r.text
            assert c.get(f"/admin/wire/{r.headers['x-request-id']}").status_code == 404, h
        assert c.get("/admin/wire/..%2f..").status_code == 404


def test_a_capture_is_bounded_to_one_mib_per_part(gateway):
    c, headers = playground(gateway)
    big = "é" * 700_000  # 1.4 MB of UTF-8: every part is cut, some in the middle of a character
    with closing(c):
        r = c.post(
            "/v1/chat/completions",
            json={"model": "via-openai", "messages": [{"role": "user", "content": big}]},
            headers=headers,
        )
        assert r.status_code == 200
        wire = c.get(f"/admin/wire/{r.headers['x-request-id']}").json()
    [up] = wire["upstream"]
    for part in (
        wire["client_request"]["body"],
        up["body"],
        up["response_body"],
        wire["client_response"]["body"],
    ):
        assert part["truncated"] and not part["base64"]  # still text, cut at a character
        assert 1_048_576 - 4 <= len(part["text"].encode()) <= 1_048_576


def test_recent_requests_newest_first_without_bodies_by_default(gateway):
    sdk = openai.OpenAI(base_url=gateway.url + "/v1", api_key="sk-unused", max_retries=0)
    ids = []
    for alias in ("via-ollama", "via-anthropic", "nope"):
        try:
            raw = sdk.chat.completions.with_raw_response.create(
                model=alias, messages=[{"role": "user", "content": "hi"}]
            )
            ids.append(raw.headers["x-request-id"])
        except openai.NotFoundError as exc:
            ids.append(exc.response.headers["x-request-id"])
    c, _ = signed_in(gateway)
    with closing(c):
        got = c.get("/admin/requests?limit=3").json()["requests"]
        assert c.get("/admin/requests?limit=0").status_code == 400
    assert [v["request_id"] for v in got] == ids[::-1]
    ollama, anth, missing = got[2], got[1], got[0]
    assert missing["status"] == 404 and missing["error_kind"] == "not_found" and missing["attempts"] == []
    assert anth["attempts"][0]["upstream_protocol"] == "anthropic" and anth["client_protocol"] == "openai"
    assert ollama["usage"]["input_tokens"] > 0 and ollama["latency_ms"] > 0 and ollama["key_id"] is None
    assert all("bodies" not in v and not v["path"].startswith("/admin") for v in got)


def test_with_log_bodies_the_bodies_are_kept_bounded(upstreams, tmp_path):
    cfg = console_config(upstreams, tmp_path, "console: {log_bodies: true, recent_requests: 2}\n")
    with GatewayServer(cfg) as gw:
        sdk = openai.OpenAI(base_url=gw.url + "/v1", api_key="sk-unused", max_retries=0)
        big = "x" * 70_000
        for text in ("first", "second", big):
            sdk.chat.completions.create(model="via-openai", messages=[{"role": "user", "content": text}])
        c, _ = signed_in(gw)
        with closing(c):
            got = c.get("/admin/requests").json()["requests"]
    assert len(got) == 2  # the ring holds console.recent_requests
    last, second = got
    assert json.loads(second["bodies"]["request"])["messages"][0]["content"] == "second"
    assert json.loads(second["bodies"]["response"])["object"] == "chat.completion"
    assert not second["bodies"]["truncated"]
    assert last["bodies"]["truncated"] and len(last["bodies"]["request"]) == 64 * 1024
