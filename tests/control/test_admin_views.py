"""`/admin/models` and `/admin/health`: the operator's view of routes and of the gateway's state."""

from __future__ import annotations

import time

import httpx

from smolgate.config import parse_config
from tests.control.upstreams import KeysUpstream
from tests.gateway_server import GatewayServer

ADMIN = {"authorization": "Bearer admin-views-key-123456"}


def test_models_and_health_show_routes_accounts_and_the_ledger(tmp_path):
    up = KeysUpstream({"sk-good-1234567890"}).start()
    cfg = parse_config(
        f"data_dir: {tmp_path}\nledger: {{flush_interval: 0.05}}\n"
        "server: {admin_key: admin-views-key-123456}\n"
        "providers:\n"
        f"  - name: a\n    protocol: openai\n    base_url: {up.url}/v1\n"
        "    accounts: [{api_key: sk-good-1234567890, name: good}]\n"
        f"  - name: b\n    protocol: openai\n    base_url: {up.url}/v1\n"
        "    accounts: [{api_key: sk-bad-1234567890, name: bad}]\n"
        "models:\n"
        "  - {name: main, targets: [{provider: a, model: m1}, {provider: b, model: m2}], fallbacks: [spare]}\n"
        "  - {name: spare, targets: [{provider: a, model: m3}]}\n"
    )
    try:
        with GatewayServer(cfg) as gw, httpx.Client(base_url=gw.url, headers=ADMIN) as c:
            models = {m["name"]: m for m in c.get("/admin/models").json()["models"]}
            main = models["main"]
            assert [(t["provider"], t["model"], t["protocol"]) for t in main["targets"]] == [
                ("a", "m1", "openai"),
                ("b", "m2", "openai"),
            ]
            assert main["fallbacks"] == ["spare"]
            assert main["attempt_order"] == ["a/m1", "b/m2", "a/m3"]
            assert c.get("/admin/models", headers={"authorization": "Bearer wrong"}).status_code == 401

            health = c.get("/admin/health").json()
            assert health["status"] == "ok" and health["store_status"] == "ok"
            assert health["store"].endswith("smolgate.db") and health["ledger"]["enabled"] is True
            assert {p["name"]: p["usable"] for p in health["providers"]} == {"a": 1, "b": 1}

            chat = {"model": "a/m1", "messages": [{"role": "user", "content": "hi"}]}
            assert c.post("/v1/chat/completions", json=chat).status_code == 200
            # b's only key is refused upstream: its account is disabled and the gateway reads as degraded
            assert c.post("/v1/chat/completions", json={**chat, "model": "b/m2"}).status_code == 502
            deadline = time.monotonic() + 30
            while (health := c.get("/admin/health").json())["ledger"]["written"] < 2:
                assert time.monotonic() < deadline, health
                time.sleep(0.05)
            assert {p["name"]: p["usable"] for p in health["providers"]} == {"a": 1, "b": 0}
            assert health["status"] == "degraded"
            assert "sk-" not in str(health) + str(models)
    finally:
        up.stop()
