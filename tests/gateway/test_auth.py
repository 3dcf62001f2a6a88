"""Client keys from every SDK's header style, per-key limits, and secrets kept out of errors and logs."""

from __future__ import annotations

import logging
import subprocess
import sys

import httpx
import pytest

from tests.gateway.conftest import matrix_config
from tests.gateway_server import GatewayServer

KEYS = (
    "keys:\n  - {key: sk-client-good, name: team, rpm: 1000}\n  - {key: sk-client-slow, name: slow, rpm: 2}\n"
)
CHAT = {"model": "via-openai", "messages": [{"role": "user", "content": "auth hi"}]}


@pytest.fixture(scope="module")
def keyed(upstreams):
    with GatewayServer(matrix_config({k: f.url for k, f in upstreams.items()}, KEYS)) as gw:
        yield gw


GEM = {"contents": [{"parts": [{"text": "x"}]}]}
ANT = {**CHAT, "max_tokens": 5}


@pytest.mark.parametrize(
    "path,body,header",
    [
        ("/v1/chat/completions", CHAT, "bearer"),  # openai
        ("/api/chat", CHAT, "bearer"),  # ollama
        ("/v1/messages", ANT, "bearer"),  # anthropic 2.x
        ("/v1/messages", ANT, "x-api-key"),  # anthropic ≤1.x
        ("/v1beta/models/via-openai:generateContent", GEM, "x-goog-api-key"),  # google-genai
        ("/v1beta/models/via-openai:generateContent", GEM, "bearer"),  # google-genai with OAuth credentials
    ],
)
def test_every_sdk_key_style_is_accepted_on_its_protocols_routes(keyed, path, body, header):
    headers = {"authorization": "Bearer sk-client-good"} if header == "bearer" else {header: "sk-client-good"}
    r = httpx.post(keyed.url + path, json=body, headers=headers)
    assert r.status_code == 200, r.text


@pytest.mark.parametrize(
    "path,body,header",
    [
        ("/v1/chat/completions", CHAT, "x-api-key"),
        ("/v1/chat/completions", CHAT, "x-goog-api-key"),
        ("/api/chat", CHAT, "x-api-key"),
        ("/v1/messages", ANT, "x-goog-api-key"),
        ("/v1beta/models/via-openai:generateContent", GEM, "x-api-key"),
    ],
)
def test_a_key_header_no_sdk_of_the_protocol_sends_is_not_read(keyed, path, body, header):
    r = httpx.post(keyed.url + path, json=body, headers={header: "sk-client-good"})
    assert r.status_code == 401, r.text


def test_a_key_in_the_query_is_accepted_on_gemini_routes_only(keyed):
    """Gemini's protocol puts the key in `?key=`; elsewhere a key in a URL would only end up in proxy logs."""
    gem = {"contents": [{"parts": [{"text": "x"}]}]}
    r = httpx.post(
        keyed.url + "/v1beta/models/via-openai:generateContent", json=gem, params={"key": "sk-client-good"}
    )
    assert r.status_code == 200, r.text
    assert httpx.get(keyed.url + "/v1/models", params={"key": "sk-client-good"}).status_code == 200
    r = httpx.post(keyed.url + "/v1/chat/completions", json=CHAT, params={"key": "sk-client-good"})
    assert r.status_code == 401 and r.json()["error"]["type"] == "authentication_error"


@pytest.mark.parametrize(
    "path,body,check",
    [
        ("/v1/chat/completions", CHAT, lambda j: j["error"]["type"] == "authentication_error"),
        (
            "/v1/messages",
            {**CHAT, "max_tokens": 5},
            lambda j: j["type"] == "error" and j["error"]["type"] == "authentication_error",
        ),
        (
            "/v1beta/models/via-openai:generateContent",
            {"contents": [{"parts": [{"text": "x"}]}]},
            lambda j: j["error"]["code"] == 401,
        ),
        ("/api/chat", CHAT, lambda j: isinstance(j["error"], str)),
    ],
)
@pytest.mark.parametrize("key", [None, "sk-wrong"])
def test_missing_or_wrong_key_is_401_in_the_clients_shape(keyed, path, body, check, key):
    headers = {"authorization": f"Bearer {key}"} if key else {}
    r = httpx.post(keyed.url + path, json=body, headers=headers)
    assert r.status_code == 401
    assert check(r.json())
    if key:
        assert key not in r.text


def test_per_key_rpm_limit_is_a_429_with_retry_after(keyed):
    h = {"authorization": "Bearer sk-client-slow"}
    codes = [
        httpx.post(keyed.url + "/v1/chat/completions", json=CHAT, headers=h).status_code for _ in range(3)
    ]
    assert codes[:2] == [200, 200]
    r = httpx.post(keyed.url + "/v1/chat/completions", json=CHAT, headers=h)
    assert r.status_code == 429 and r.headers.get("retry-after")
    # other keys are unaffected
    assert (
        httpx.post(
            keyed.url + "/v1/chat/completions", json=CHAT, headers={"authorization": "Bearer sk-client-good"}
        ).status_code
        == 200
    )


def test_upstream_key_rejected_is_502_and_no_secret_leaks(upstreams, caplog):
    cfg = matrix_config({k: f.url for k, f in upstreams.items()}).replace(
        "sk-up-openai", "sk-up-WRONG-secret"
    )
    caplog.set_level(logging.DEBUG)
    with GatewayServer(cfg) as gw:
        r = httpx.post(
            gw.url + "/v1/chat/completions", json=CHAT, headers={"authorization": "Bearer sk-client-zzz"}
        )
        assert r.status_code == 502
        assert "sk-up" not in r.text and "sk-client-zzz" not in r.text  # not even a masked prefix
        assert "rejected the gateway's credentials" in r.text
        accounts = httpx.get(gw.url + "/admin/accounts").text
        assert "sk-up-WRONG-secret" not in accounts
    assert "sk-up-WRONG-secret" not in caplog.text and "sk-client-zzz" not in caplog.text


def test_serve_refuses_a_public_bind_without_keys(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "smolgate.cli", "serve", "--host", "0.0.0.0", "--port", "1"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2
    assert "no client keys" in out.stdout + out.stderr
