"""Accounts added at run time through the admin API, on a real gateway with its real SQLite store, in front of
a fake upstream that records the key each request carried: used at once, disabled, enabled, removed; the key
is in no admin answer, not in the database file's bytes, not in the audit log."""

from __future__ import annotations

from pathlib import Path

import httpx
import openai
import pytest

from smolgate.config import parse_config
from tests.control.upstreams import KeysUpstream
from tests.gateway_server import GatewayServer

CANARY = "sk-canary-stored-0123456789abcdef"
CFG_KEY = "sk-cfg-1111111111"


def gateway_config(up: KeysUpstream, data_dir: Path) -> str:
    return (
        f"data_dir: {data_dir}\nproviders:\n  - name: up\n    protocol: openai\n    base_url: {up.url}/v1\n"
        f"    accounts: [{{name: cfg, api_key: {CFG_KEY}}}]\n"
        "models:\n  - name: m\n    targets: [{provider: up, model: gpt-fake}]\n"
    )


@pytest.fixture(scope="module")
def gw(tmp_path_factory):
    up = KeysUpstream({CFG_KEY, CANARY}).start()
    d = tmp_path_factory.mktemp("stored")
    with GatewayServer(parse_config(gateway_config(up, d))) as server:
        yield server, up, d
    up.stop()


def ask(url: str, n: int = 4) -> None:
    client = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
    for _ in range(n):
        client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])


def keys_used(server: GatewayServer, up: KeysUpstream) -> set[str]:
    up.reset()
    ask(server.url)
    return set(up.keys_seen())


def test_account_added_through_the_admin_api_is_used_and_never_shown(gw):
    server, up, d = gw
    body = {"provider": "up", "name": "team-b", "api_key": CANARY, "rpm": 100, "weight": 2}
    r = httpx.post(server.url + "/admin/accounts", json=body)
    assert r.status_code == 201, r.text
    added = r.json()
    assert added["name"] == "team-b" and added["rpm"] == 100 and added["enabled"] is True
    assert CANARY not in r.text and "api_key" not in added and "key_ciphertext" not in added
    httpx.post(server.url + "/admin/accounts/cfg/disable").raise_for_status()
    try:
        assert keys_used(server, up) == {CANARY}  # the upstream received the stored account's key
    finally:
        httpx.post(server.url + "/admin/accounts/cfg/enable").raise_for_status()
    listing = httpx.get(server.url + "/admin/accounts")
    assert CANARY not in listing.text
    assert [a["name"] for a in listing.json()["stored"]] == ["team-b"]
    assert "team-b" in {a["account"] for a in listing.json()["accounts"]}
    # The database holds only the ciphertext: not the key, nor its common encodings.
    blobs = b"".join(p.read_bytes() for p in d.iterdir() if p.name.startswith("smolgate.db"))
    assert blobs and CANARY.encode() not in blobs and CANARY[3:].encode() not in blobs


def test_disable_enable_remove_at_run_time(gw):
    server, up, _ = gw
    assert keys_used(server, up) == {CFG_KEY, CANARY}
    r = httpx.post(server.url + "/admin/accounts/team-b/disable")
    assert r.json() == {"provider": "up", "name": "team-b", "enabled": False, "stored": True}
    assert keys_used(server, up) == {CFG_KEY}
    httpx.post(server.url + "/admin/accounts/team-b/enable").raise_for_status()
    assert keys_used(server, up) == {CFG_KEY, CANARY}
    r = httpx.delete(server.url + "/admin/accounts/team-b")
    assert r.status_code == 200 and r.json()["stored"] is True
    assert keys_used(server, up) == {CFG_KEY}
    assert httpx.get(server.url + "/admin/accounts").json()["stored"] == []


def test_every_change_is_audited_without_the_key(gw):
    server, _, _ = gw
    r = httpx.get(server.url + "/admin/audit", params={"limit": 50, "since": "1h"})
    assert r.status_code == 200 and CANARY not in r.text
    rows = r.json()["entries"]
    seen = [(e["action"], e["target"]) for e in reversed(rows) if e["action"].startswith("account.")]
    assert seen == [
        ("account.add", "up/team-b"),
        ("account.disable", "up/cfg"),
        ("account.enable", "up/cfg"),
        ("account.disable", "up/team-b"),
        ("account.enable", "up/team-b"),
        ("account.remove", "up/team-b"),
    ]
    assert all(e["actor"] == "admin-api" and e["source"] == "127.0.0.1" for e in rows)
    assert httpx.get(server.url + "/admin/audit", params={"limit": "x"}).status_code == 400


@pytest.mark.parametrize(
    ("body", "why"),
    [
        ({"provider": "nope", "name": "x", "api_key": "sk-123456"}, "provider must be one of"),
        ({"provider": "up", "name": "cfg", "api_key": "sk-123456"}, "already has an account named 'cfg'"),
        ({"provider": "up", "name": "a/b", "api_key": "sk-123456"}, "name must be"),
        ({"provider": "up", "name": "x", "api_key": "sk-1\r\nx-evil: 1"}, "printable text"),
        ({"provider": "up", "name": "x", "api_key": "sk-123456", "rpm": 0}, "rpm must be a positive"),
        ({"provider": "up", "name": "x"}, "api_key"),
        ({"provider": "up", "name": "x", "api_key": "sk-123456", "extra": 1}, "extra"),
    ],
)
def test_bad_accounts_are_refused_naming_the_field(gw, body, why):
    server, _, _ = gw
    r = httpx.post(server.url + "/admin/accounts", json=body)
    assert r.status_code == 400 and why in r.json()["error"]["message"]
    assert "sk-123456" not in r.text
