"""Two gateway replicas on one real PostgreSQL store and one master key (from the environment): an account
added, disabled and removed through one replica's admin API is picked up by the other without a restart."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
import openai
import pytest

from smolgate.config import parse_config
from smolgate.crypto import ENV, MasterKey
from smolgate.server import runtime_accounts
from tests.control.upstreams import KeysUpstream
from tests.gateway_server import GatewayServer
from tests.postgres_server import PostgresServer

KEY = "sk-replica-0123456789abcdef"


def eventually(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 30
    while not check():
        assert time.monotonic() < deadline, f"never: {what}"
        time.sleep(0.05)


def accounts(gw: GatewayServer) -> dict[str, str]:
    return {a["account"]: a["state"] for a in httpx.get(gw.url + "/admin/accounts").json()["accounts"]}


def test_a_change_through_one_replica_reaches_the_other(tmp_path, monkeypatch):
    monkeypatch.setattr(runtime_accounts, "REFRESH", 0.05)
    monkeypatch.setenv(ENV, MasterKey.generate()[1])
    up = KeysUpstream({KEY})
    up.start()
    try:
        with PostgresServer() as pg:
            url = pg.create_database()
            text = (
                f"store: '{url}'\nproviders:\n  - name: up\n    protocol: openai\n    base_url: {up.url}/v1\n"
                "models:\n  - name: m\n    targets: [{provider: up, model: gpt-fake}]\n"
            )
            a_cfg = parse_config(text + f"data_dir: {tmp_path / 'a'}\n")
            b_cfg = parse_config(text + f"data_dir: {tmp_path / 'b'}\n")
            with GatewayServer(a_cfg) as a, GatewayServer(b_cfg) as b:
                body = {"provider": "up", "name": "shared", "api_key": KEY}
                assert httpx.post(a.url + "/admin/accounts", json=body).status_code == 201
                eventually(lambda: "shared" in accounts(b), "replica b loads the account")
                client = openai.OpenAI(base_url=b.url + "/v1", api_key="unused", max_retries=0)
                up.reset()
                client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
                assert up.keys_seen() == [KEY]
                httpx.post(a.url + "/admin/accounts/shared/disable").raise_for_status()
                eventually(lambda: accounts(b).get("shared") == "disabled", "replica b sees the disable")
                httpx.delete(a.url + "/admin/accounts/shared").raise_for_status()
                eventually(lambda: "shared" not in accounts(b), "replica b drops the account")
                with pytest.raises(openai.APIStatusError):
                    client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
    finally:
        up.stop()


def test_re_enabling_on_one_replica_reaches_the_other_through_redis(tmp_path, monkeypatch):
    """An account the upstream rejected is disabled on every replica (shared state); an operator's enable on
    one replica lifts it on the others too, without a restart."""
    from tests.pool.conftest import RedisServer, _ensure_binary

    monkeypatch.setattr(runtime_accounts, "REFRESH", 0.05)
    _ensure_binary()
    redis_server = RedisServer(tmp_path).start()
    up = KeysUpstream({"sk-b-0123456789"}).start()  # a's key is rejected for now
    try:
        text = (
            f"state: {redis_server.url}\nproviders:\n  - name: up\n    protocol: openai\n"
            f"    base_url: {up.url}/v1\n"
            "    accounts: [{name: a, api_key: sk-a-0123456789}, {name: b, api_key: sk-b-0123456789}]\n"
            "models:\n  - name: m\n    targets: [{provider: up, model: gpt-fake}]\n"
        )
        a_cfg = parse_config(text + f"data_dir: {tmp_path / 'a'}\n")
        b_cfg = parse_config(text + f"data_dir: {tmp_path / 'b'}\n")
        with GatewayServer(a_cfg) as a, GatewayServer(b_cfg) as b:
            client = openai.OpenAI(base_url=a.url + "/v1", api_key="unused", max_retries=0)
            for _ in range(3):  # round robin reaches a, whose key is rejected: disabled everywhere
                client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
            eventually(lambda: accounts(b).get("a") == "disabled", "replica b sees a disabled")
            up.keys.add("sk-a-0123456789")  # fixed upstream
            httpx.post(a.url + "/admin/accounts/a/enable").raise_for_status()
            eventually(lambda: accounts(b).get("a") == "healthy", "replica b sees a enabled again")
            up.reset()
            client_b = openai.OpenAI(base_url=b.url + "/v1", api_key="unused", max_retries=0)
            for _ in range(4):
                client_b.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
            assert "sk-a-0123456789" in up.keys_seen()
    finally:
        up.stop()
        redis_server.stop()
