"""Config accounts enabled and disabled at run time through the admin API (no restart), on a real gateway in
front of a fake upstream that records which key each request carried."""

from __future__ import annotations

import httpx
import openai
import pytest

from smolgate.config import parse_config
from tests.control.upstreams import KeysUpstream
from tests.gateway_server import GatewayServer


@pytest.fixture(scope="module")
def gw(tmp_path_factory):
    up = KeysUpstream({"sk-a-123456", "sk-b-123456"}).start()
    d = tmp_path_factory.mktemp("cfgaccts")
    cfg = parse_config(
        f"data_dir: {d}\nproviders:\n  - name: up\n    protocol: openai\n    base_url: {up.url}/v1\n"
        "    accounts: [{name: a, api_key: sk-a-123456}, {name: b, api_key: sk-b-123456}]\n"
        "models:\n  - name: m\n    targets: [{provider: up, model: gpt-fake}]\n"
    )
    with GatewayServer(cfg) as server:
        yield server, up
    up.stop()


def ask(url: str, n: int) -> None:
    client = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
    for _ in range(n):
        client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])


def state(url: str, name: str) -> str:
    accounts = httpx.get(url + "/admin/accounts").json()["accounts"]
    return next(a["state"] for a in accounts if a["account"] == name)


def test_disable_and_enable_a_config_account_without_restart(gw):
    server, up = gw
    r = httpx.post(server.url + "/admin/accounts/a/disable")
    assert r.status_code == 200 and r.json() == {
        "provider": "up",
        "name": "a",
        "enabled": False,
        "stored": False,
    }
    assert state(server.url, "a") == "disabled"
    up.reset()
    ask(server.url, 4)
    assert set(up.keys_seen()) == {"sk-b-123456"}
    assert httpx.post(server.url + "/admin/accounts/a/enable").status_code == 200
    up.reset()
    ask(server.url, 4)
    assert set(up.keys_seen()) == {"sk-a-123456", "sk-b-123456"}


def test_an_account_disabled_after_the_upstream_rejected_its_key_is_re_enabled(gw):
    server, up = gw
    up.keys.discard("sk-a-123456")  # the upstream revokes a's key
    ask(server.url, 4)  # a gets a 401 and is disabled; the clients never notice
    assert state(server.url, "a") == "disabled"
    up.keys.add("sk-a-123456")  # the operator fixes it upstream
    assert httpx.post(server.url + "/admin/accounts/a/enable").status_code == 200
    assert state(server.url, "a") == "healthy"
    up.reset()
    ask(server.url, 4)
    assert "sk-a-123456" in up.keys_seen()


def test_unknown_account_and_removing_a_config_account_are_refused(gw):
    server, _ = gw
    r = httpx.post(server.url + "/admin/accounts/nope/enable")
    assert r.status_code == 404 and "no account named 'nope'" in r.text
    r = httpx.delete(server.url + "/admin/accounts/a")
    assert r.status_code == 400 and "config account" in r.text
