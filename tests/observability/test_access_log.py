"""The access log: one info line per request with its fields, never a key."""

from __future__ import annotations

import logging
import time

import httpx
import pytest

from tests.gateway_server import GatewayServer
from tests.observability.conftest import obs_config

KEY = "sk-client-access-0123456789"


@pytest.fixture(scope="module")
def keyed(fakes):
    with GatewayServer(obs_config(fakes, f"keys: [{{key: {KEY}, name: team}}]\n")) as gw:
        yield gw


def access_records(caplog: pytest.LogCaptureFixture, n: int = 0) -> list[logging.LogRecord]:
    """The access records so far, once there are `n` (the line is written just after the reply is sent)."""
    end = time.monotonic() + 10
    while True:
        found = [r for r in caplog.records if r.name == "smolgate.access"]
        if len(found) >= n or time.monotonic() > end:
            return found
        time.sleep(0.01)


def test_one_line_per_request_with_its_fields_and_no_key(keyed, caplog):
    caplog.set_level(logging.INFO, logger="smolgate.access")
    auth = {"authorization": f"Bearer {KEY}", "x-request-id": "acc-1"}
    body = {"model": "flaky", "messages": [{"role": "user", "content": "hello"}]}
    assert httpx.post(keyed.url + "/v1/chat/completions", headers=auth, json=body).status_code == 200
    assert httpx.post(keyed.url + "/v1/chat/completions?key=" + KEY, json=body).status_code == 401
    [ok, refused] = access_records(caplog, 2)
    f = ok.fields  # type: ignore[attr-defined]
    assert f["status"] == 200 and f["method"] == "POST" and f["path"] == "/v1/chat/completions"
    assert (f["alias"], f["provider"], f["account"], f["attempts"]) == ("flaky", "up-openai", "main", 2)
    assert f["key_id"] == "config:team" and f["client_protocol"] == "openai" and f["stream"] is False
    assert f["latency_ms"] > 0 and f["error_kind"] is None
    assert ok.request_id == "acc-1"  # type: ignore[attr-defined]
    msg = ok.getMessage()
    assert msg.startswith("POST /v1/chat/completions 200 ") and "account=main" in msg and "(acc-1)" in msg
    assert refused.fields["status"] == 401 and refused.fields["error_kind"] == "auth"  # type: ignore[attr-defined]
    assert "?" not in refused.fields["path"]  # type: ignore[attr-defined]  # a query may hold a key
    for r in (ok, refused):
        assert KEY not in r.getMessage() and KEY not in repr(r.fields)  # type: ignore[attr-defined]


def test_a_forged_newline_in_a_model_name_stays_on_one_line(keyed, caplog):
    caplog.set_level(logging.INFO, logger="smolgate.access")
    body = {"model": "x\nPOST /admin 200", "messages": [{"role": "user", "content": "hi"}]}
    r = httpx.post(keyed.url + "/v1/chat/completions", headers={"authorization": f"Bearer {KEY}"}, json=body)
    assert r.status_code == 400
    [rec] = access_records(caplog, 1)
    assert "\n" not in rec.getMessage()


def test_access_log_off(fakes, caplog):
    caplog.set_level(logging.INFO, logger="smolgate.access")
    with GatewayServer(obs_config(fakes, "observability: {access_log: false}\n")) as gw:
        httpx.get(gw.url + "/health")
    assert access_records(caplog) == []  # (the gateway has stopped: nothing is still to come)
