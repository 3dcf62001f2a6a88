"""Every refused request leaves a log line with its reason (issue 15: failures were invisible in the log)."""

from __future__ import annotations

import logging

import httpx

from tests.fakes.openai_upstream import OpenAIUpstream
from tests.gateway_server import GatewayServer

UPSTREAM_KEY = "sk-upstream-secret-value-123"


def test_refusals_are_logged_with_their_reason_and_no_secret(caplog):
    up = OpenAIUpstream(api_key="another-key").start()  # rejects our key: the account gets disabled
    cfg = (
        f"providers:\n  - name: up\n    protocol: openai\n    base_url: {up.url}/v1\n"
        f"    accounts: [{{api_key: {UPSTREAM_KEY}}}]\n"
        "models:\n  - name: m\n    targets: [{provider: up, model: gpt-fake}]\n"
    )
    try:
        with GatewayServer(cfg) as gw, caplog.at_level(logging.INFO, logger="smolgate"):
            bad = httpx.post(gw.url + "/v1/chat/completions", json={"model": "m", "messages": "nope"})
            hi = [{"role": "user", "content": "hi"}]
            body = {"model": "nope", "max_tokens": 5, "messages": hi}
            unknown = httpx.post(
                gw.url + "/v1/messages", json=body, headers={"anthropic-version": "2023-06-01"}
            )
            rejected = httpx.post(gw.url + "/v1/chat/completions", json={"model": "m", "messages": hi})
    finally:
        up.stop()
    assert (bad.status_code, unknown.status_code, rejected.status_code) == (400, 404, 502)
    lines = [r.getMessage() for r in caplog.records]
    assert any("/v1/chat/completions -> 400 invalid_request" in m and "messages" in m for m in lines)
    assert any("/v1/messages -> 404 not_found" in m for m in lines)
    assert any("-> 502" in m and "credentials" in m for m in lines)
    assert any("rejected an account's key" in m for m in lines)
    assert not any(UPSTREAM_KEY in m for m in lines)
