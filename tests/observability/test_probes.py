"""The probes answer load balancers without any key; /metrics needs the admin key unless made public; every
reply carries an x-request-id."""

from __future__ import annotations

import time

import httpx
import openai
import pytest

from tests.gateway_server import GatewayServer
from tests.observability.conftest import obs_config
from tests.postgres_server import PostgresServer

CLIENT_KEY = "sk-client-probe-0123456789"
ADMIN_KEY = "adm-probe-0123456789"


@pytest.fixture(scope="module")
def keyed(fakes):
    extra = f"keys: [{{key: {CLIENT_KEY}, name: team}}]\nserver: {{admin_key: {ADMIN_KEY}}}\n"
    with GatewayServer(obs_config(fakes, extra)) as gw:
        yield gw


@pytest.mark.parametrize("path", ["/health", "/healthz", "/ready", "/readyz"])
def test_probes_answer_without_a_key_when_keys_exist(keyed, path):
    r = httpx.get(keyed.url + path)
    assert r.status_code == 200, r.text
    assert r.headers["x-request-id"]


def test_ready_reports_its_checks_and_nothing_sensitive(keyed):
    body = httpx.get(keyed.url + "/ready").json()
    assert body["status"] == "ready"
    assert body["checks"] == {
        "started": "ok",
        "shutting_down": False,
        "engine": "none",
        "store": "ok",  # the default SQLite file (in the test's SMOLGATE_HOME)
        "providers": 3,
    }


def test_ready_is_503_once_shutdown_begins(fakes):
    with GatewayServer(obs_config(fakes)) as gw:
        gw.app.runtime.drain.stopping = True  # what Server.shutdown sets first
        r = httpx.get(gw.url + "/ready")
        assert r.status_code == 503
        assert r.json()["checks"]["shutting_down"] is True
        assert httpx.get(gw.url + "/health").status_code == 200  # still alive


def test_ready_is_503_while_the_store_is_unreachable(fakes):
    with PostgresServer() as pg, GatewayServer(obs_config(fakes, f"store: '{pg.create_database()}'\n")) as gw:
        assert httpx.get(gw.url + "/ready").json()["checks"]["store"] == "ok"
        pg.halt()  # the database goes away under a running gateway
        r = httpx.get(gw.url + "/ready")
        assert r.status_code == 503
        assert r.json()["checks"]["store"] == "unreachable"
        assert "postgresql" not in r.text and "127.0.0.1" not in r.text  # no address, no error text
        assert httpx.get(gw.url + "/health").status_code == 200  # alive all the same
        pg.resume()
        wait = time.monotonic() + 30  # the store reconnects on its next use
        while httpx.get(gw.url + "/ready").status_code != 200 and time.monotonic() < wait:
            time.sleep(0.1)
        assert httpx.get(gw.url + "/ready").status_code == 200


def test_model_routes_still_need_the_client_key(keyed):
    r = httpx.post(keyed.url + "/v1/chat/completions", json={"model": "fast", "messages": []})
    assert r.status_code == 401


def test_metrics_need_the_admin_key(keyed):
    assert httpx.get(keyed.url + "/metrics").status_code == 401
    bearer = {"authorization": f"Bearer {CLIENT_KEY}"}
    assert httpx.get(keyed.url + "/metrics", headers=bearer).status_code == 403
    r = httpx.get(keyed.url + "/metrics", headers={"authorization": f"Bearer {ADMIN_KEY}"})
    assert r.status_code == 200
    assert "smolgate_requests_total" in r.text


def test_metrics_public_opens_metrics_only(fakes):
    extra = f"keys: [{{key: {CLIENT_KEY}}}]\nserver: {{admin_key: {ADMIN_KEY}}}\n"
    extra += "observability: {metrics_public: true}\n"
    with GatewayServer(obs_config(fakes, extra)) as gw:
        assert httpx.get(gw.url + "/metrics").status_code == 200
        assert httpx.get(gw.url + "/admin/accounts").status_code == 401


def test_metrics_off_is_404(fakes):
    with GatewayServer(obs_config(fakes, "observability: {metrics: false}\n")) as gw:
        assert httpx.get(gw.url + "/metrics").status_code == 404


def test_x_request_id_on_success_error_and_stream(keyed):
    seen: list[httpx.Response] = []
    http = httpx.Client(event_hooks={"response": [seen.append]})
    oai = openai.OpenAI(base_url=keyed.url + "/v1", api_key=CLIENT_KEY, max_retries=0, http_client=http)
    oai.chat.completions.create(model="fast", messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(openai.NotFoundError):
        oai.chat.completions.create(model="nope", messages=[{"role": "user", "content": "hi"}])
    for _ in oai.chat.completions.create(
        model="fast", messages=[{"role": "user", "content": "s"}], stream=True
    ):
        pass
    assert [r.status_code for r in seen] == [200, 404, 200]
    assert seen[2].headers["content-type"].startswith("text/event-stream")
    ids = [r.headers["x-request-id"] for r in seen]
    assert all(i.startswith("req_") for i in ids) and len(set(ids)) == 3
    # the client's own id comes back (on a stream too), so its logs and ours join
    r = httpx.post(
        keyed.url + "/v1/chat/completions",
        headers={"authorization": f"Bearer {CLIENT_KEY}", "x-request-id": "trace-42.a"},
        json={"model": "fast", "messages": [{"role": "user", "content": "x"}], "stream": True},
    )
    assert r.headers["x-request-id"] == "trace-42.a"
    # one that is not a tame token is replaced
    r = httpx.get(keyed.url + "/health", headers={"x-request-id": "a b<script>"})
    assert r.headers["x-request-id"].startswith("req_")


def test_probes_stay_keyless_once_virtual_keys_close_the_gateway(fakes, tmp_path):
    with GatewayServer(obs_config(fakes, f"data_dir: {tmp_path}\n")) as gw:  # its own store: its own keys
        r = httpx.post(gw.url + "/admin/keys", json={"name": "probe-team"})  # loopback: no admin key needed
        assert r.status_code == 201, r.text
        secret = r.json()["secret"]
        body = {"model": "fast", "messages": [{"role": "user", "content": "hi"}]}
        assert httpx.post(gw.url + "/v1/chat/completions", json=body).status_code == 401
        for path in ("/health", "/ready"):
            assert httpx.get(gw.url + path).status_code == 200
        ok = httpx.post(
            gw.url + "/v1/chat/completions", json=body, headers={"authorization": f"Bearer {secret}"}
        )
        assert ok.status_code == 200
