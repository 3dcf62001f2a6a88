"""Class 10: a web page cannot drive a gateway on localhost (Host allow-list against DNS rebinding, Origin
checks against cross-site requests, CORS only for configured origins), and admin routes need an admin
credential that client keys are not."""

from __future__ import annotations

import os
import subprocess
import sys

import httpx
import pytest

from tests.gateway.conftest import matrix_config, upstreams  # noqa: F401  (fixture)
from tests.gateway_server import GatewayServer

CLIENT = "sk-access-client-0001"
ADMIN = "sk-access-admin-0001"
CHAT = {"model": "via-openai", "messages": [{"role": "user", "content": "access hi"}]}


def urls(ups) -> dict[str, str]:
    return {k: f.url for k, f in ups.items()}


@pytest.fixture(scope="module")
def keyless(upstreams):  # noqa: F811
    with GatewayServer(matrix_config(urls(upstreams))) as gw:
        yield gw


@pytest.fixture(scope="module")
def cors(upstreams):  # noqa: F811
    extra = (
        "server:\n  allowed_hosts: [127.0.0.1, gw.example, '*.corp.example']\n"
        "  cors_origins: ['http://app.example']\n"
    )
    with GatewayServer(matrix_config(urls(upstreams), extra)) as gw:
        yield gw


@pytest.fixture(scope="module")
def keyed(upstreams):  # noqa: F811
    extra = f"keys:\n  - {{key: {CLIENT}}}\nserver:\n  admin_key: {ADMIN}\n"
    with GatewayServer(matrix_config(urls(upstreams), extra)) as gw:
        yield gw


def test_keyless_mode_answers_only_loopback_host_names(keyless):
    """DNS rebinding: a page on evil.example whose name now resolves to 127.0.0.1 sends `Host: evil.example`."""
    port = keyless.port
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}", "localhost"):
        assert httpx.get(keyless.url + "/v1/models", headers={"host": host}).status_code == 200, host
    for host in (f"evil.example:{port}", "evil.example", f"127.0.0.1.evil.example:{port}"):
        r = httpx.post(keyless.url + "/v1/chat/completions", json=CHAT, headers={"host": host})
        assert r.status_code == 403 and r.json()["error"]["type"] == "permission_error", host
        r = httpx.post(keyless.url + "/api/chat", json=CHAT, headers={"host": host})
        assert r.status_code == 403 and isinstance(r.json()["error"], str)  # Ollama's shape
        assert httpx.get(keyless.url + "/admin/accounts", headers={"host": host}).status_code == 403


def test_cross_origin_browser_requests_are_refused(keyless):
    r = httpx.post(keyless.url + "/v1/chat/completions", json=CHAT, headers={"origin": "http://evil.example"})
    assert r.status_code == 403 and "access-control-allow-origin" not in r.headers
    r = httpx.post(keyless.url + "/v1/messages", json={**CHAT, "max_tokens": 5}, headers={"origin": "null"})
    assert r.status_code == 403 and r.json()["error"]["type"] == "permission_error"  # Anthropic's shape
    r = httpx.get(keyless.url + "/v1/models", headers={"sec-fetch-site": "cross-site"})
    assert r.status_code == 403
    pre = httpx.options(
        keyless.url + "/v1/chat/completions",
        headers={"origin": "http://evil.example", "access-control-request-method": "POST"},
    )
    assert pre.status_code == 403 and "access-control-allow-origin" not in pre.headers
    # the gateway's own origin, and tools that send no Origin, are fine
    own = httpx.get(
        keyless.url + "/v1/models", headers={"origin": keyless.url, "sec-fetch-site": "same-origin"}
    )
    assert own.status_code == 200
    assert httpx.post(keyless.url + "/v1/chat/completions", json=CHAT).status_code == 200


def test_configured_origins_get_cors_and_preflight_answers(cors):
    origin = "http://app.example"
    pre = httpx.options(
        cors.url + "/v1/chat/completions",
        headers={
            "origin": origin,
            "access-control-request-method": "POST",
            "access-control-request-headers": "authorization, content-type, x-stainless-os",
        },
    )
    assert pre.status_code == 204
    assert pre.headers["access-control-allow-origin"] == origin
    assert "POST" in pre.headers["access-control-allow-methods"]
    assert "x-stainless-os" in pre.headers["access-control-allow-headers"]
    r = httpx.post(cors.url + "/v1/chat/completions", json=CHAT, headers={"origin": origin})
    assert r.status_code == 200 and r.headers["access-control-allow-origin"] == origin
    assert "origin" in r.headers["vary"].lower()
    s = httpx.post(
        cors.url + "/v1/chat/completions", json={**CHAT, "stream": True}, headers={"origin": origin}
    )
    assert s.status_code == 200 and s.headers["access-control-allow-origin"] == origin
    err = httpx.post(
        cors.url + "/v1/chat/completions", json={"model": "nope", "messages": []}, headers={"origin": origin}
    )
    assert err.status_code in (400, 404) and err.headers["access-control-allow-origin"] == origin
    assert httpx.get(cors.url + "/v1/models", headers={"origin": "http://other.example"}).status_code == 403


def test_allowed_hosts_are_configurable(cors):
    for host in ("gw.example", f"gw.example:{cors.port}", "a.corp.example", "GW.EXAMPLE."):
        assert httpx.get(cors.url + "/v1/models", headers={"host": host}).status_code == 200, host
    for host in ("localhost", "corp.example", "evil.example"):
        assert httpx.get(cors.url + "/v1/models", headers={"host": host}).status_code == 403, host


def test_admin_routes_need_the_admin_key_and_a_client_key_never_opens_them(keyed):
    # (with client keys, any Host is served unless allowed_hosts says otherwise)
    r = httpx.get(
        keyed.url + "/v1/models", headers={"host": "gateway.internal", "authorization": f"Bearer {CLIENT}"}
    )
    assert r.status_code == 200
    url = keyed.url + "/admin/accounts"
    r = httpx.get(url, headers={"authorization": f"Bearer {CLIENT}"})
    assert r.status_code == 403 and "admin" in r.json()["error"]["message"]
    assert httpx.get(url).status_code == 401
    assert httpx.get(url, headers={"authorization": "Bearer sk-not-the-admin-key"}).status_code == 401
    assert httpx.get(url, headers={"x-api-key": CLIENT}).status_code == 403
    assert httpx.get(url, params={"key": ADMIN}).status_code == 401  # never from a URL
    ok = httpx.get(url, headers={"authorization": f"Bearer {ADMIN}"})
    assert ok.status_code == 200 and "accounts" in ok.json()
    # the admin key is not a client key either
    assert (
        httpx.post(
            keyed.url + "/v1/chat/completions", json=CHAT, headers={"authorization": f"Bearer {ADMIN}"}
        ).status_code
        == 401
    )


def test_without_an_admin_key_admin_routes_answer_only_direct_loopback_clients(upstreams):  # noqa: F811
    extra = f"keys:\n  - {{key: {CLIENT}}}\n"
    with GatewayServer(matrix_config(urls(upstreams), extra)) as gw:
        url = gw.url + "/admin/accounts"
        assert httpx.get(url).status_code == 200  # this machine
        # through a proxy (on this machine or not) the caller is not local
        for hdr in (
            {"x-forwarded-for": "203.0.113.9"},
            {"x-forwarded-for": "127.0.0.1"},
            {"forwarded": "for=203.0.113.9"},
        ):
            r = httpx.get(url, headers={**hdr, "authorization": f"Bearer {CLIENT}"})
            assert r.status_code == 403 and "admin key" in r.json()["error"]["message"], hdr


def test_the_admin_key_can_come_from_the_environment_and_smolgate_accounts_sends_it(upstreams, monkeypatch):  # noqa: F811
    monkeypatch.setenv("SMOLGATE_ADMIN_KEY", ADMIN)
    with GatewayServer(matrix_config(urls(upstreams))) as gw:
        assert httpx.get(gw.url + "/admin/accounts").status_code == 401
        env = {**os.environ, "SMOLGATE_ADMIN_KEY": ADMIN}
        out = subprocess.run(
            [sys.executable, "-m", "smolgate.cli", "accounts", "--url", gw.url],
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
            check=False,
        )
        assert out.returncode == 0, out.stdout + out.stderr
        assert "up-openai" in out.stdout and ADMIN not in out.stdout
        env["SMOLGATE_ADMIN_KEY"] = "sk-wrong-admin-0000"
        out = subprocess.run(
            [sys.executable, "-m", "smolgate.cli", "accounts", "--url", gw.url],
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
            check=False,
        )
        assert out.returncode == 1 and "401" in out.stdout + out.stderr and "Traceback" not in out.stderr
