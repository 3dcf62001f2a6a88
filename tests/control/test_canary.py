"""A stored account's key as a canary: the upstream rejects it and quotes it whole in its error. It must not
reach the client's error, the logs, the admin API's answers, the audit log or the ledger (the database file)."""

from __future__ import annotations

import logging
import sqlite3
import time

import httpx

from smolgate.config import parse_config
from tests.control.upstreams import KeysUpstream
from tests.gateway_server import GatewayServer

CANARY = "sk-canary-rejected-0123456789abcdef"


def test_a_rejected_stored_key_leaks_nowhere(tmp_path, caplog):
    up = KeysUpstream({"sk-other-0123456789"}, echo=True).start()
    cfg = parse_config(
        f"data_dir: {tmp_path}\nledger: {{flush_interval: 0.05}}\n"
        f"providers:\n  - name: up\n    protocol: openai\n    base_url: {up.url}/v1\n"
        "models:\n  - name: m\n    targets: [{provider: up, model: gpt-fake}]\n"
    )
    seen: list[str] = []
    try:
        with caplog.at_level(logging.DEBUG), GatewayServer(cfg) as gw:
            body = {"provider": "up", "name": "canary", "api_key": CANARY}
            seen.append(httpx.post(gw.url + "/admin/accounts", json=body).text)
            r = httpx.post(
                gw.url + "/v1/chat/completions",
                json={"model": "m", "messages": [{"role": "user", "content": "hi"}]},
            )
            assert r.status_code == 502 and r.json()["error"]["code"] == "auth"
            assert up.keys_seen() == [CANARY]  # it did go upstream, and came back quoted
            seen += [r.text, *(httpx.get(gw.url + p).text for p in ("/admin/accounts", "/admin/audit"))]
            with sqlite3.connect(tmp_path / "smolgate.db") as db:
                deadline = time.monotonic() + 30
                while not db.execute("SELECT count(*) FROM usage").fetchone()[0]:
                    assert time.monotonic() < deadline, "the ledger row never arrived"
                    time.sleep(0.05)
                assert db.execute("SELECT account FROM usage").fetchall() == [("canary",)]  # by name
    finally:
        up.stop()
    assert "Incorrect API key provided: ***" in caplog.text  # the upstream's quote, masked in the log
    files = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("smolgate.db"))
    for where, text in [*enumerate(seen), ("logs", caplog.text), ("store", files.decode("latin-1"))]:
        assert CANARY not in text and CANARY[3:] not in text, where


def test_keys_added_at_run_time_join_the_log_redaction_of_serve(caplog):
    """`smolgate serve` filters every record through a RedactingFilter on its log writers (the queue listener's
    handlers, not the root logger's); a key added later (runtime_accounts) reaches that filter too."""
    from smolgate.secret import RedactingFilter, redact_in_logs

    writer = logging.StreamHandler()  # like serve's: on no logger, fed by a queue listener
    flt = RedactingFilter(["sk-config-0123456"])
    writer.addFilter(flt)
    redact_in_logs([CANARY])
    record = logging.LogRecord("smolgate", logging.INFO, __file__, 1, "key %s and %s", (CANARY, "x"), None)
    flt.filter(record)
    assert record.getMessage() == "key *** and x"
    record = logging.LogRecord("smolgate", logging.INFO, __file__, 1, "sk-config-0123456", None, None)
    flt.filter(record)
    assert record.getMessage() == "***"
    redact_in_logs([CANARY])  # a key learnt twice (a reload) is held once
    assert flt.values.count(CANARY) == 1


UPSTREAM_OK = "sk-canary-accepted-7f3e9a1b2c4d"
CONFIG_ACCOUNT = "sk-canary-config-5a6b7c8d9e0f"
ADMIN = "admin-canary-1b2c3d4e5f6a7b8c"


def test_no_secret_of_any_kind_reaches_any_output(tmp_path, caplog):
    """Every credential the control plane holds — a config account key and a stored one (both rejected and quoted
    back by the upstream), a stored key that works, the admin key, a virtual key's secret — is absent from client
    answers (plain, streamed and errors), every admin answer, /metrics, the logs and the store's files — the
    console's answers included: sign-in, recent requests with bodies, routes, tries, account tests, and the
    playground's wire captures of upstream calls whose error bodies quote a rejected key."""
    up = KeysUpstream({UPSTREAM_OK}, echo=True).start()
    cfg = parse_config(
        f"data_dir: {tmp_path}\nledger: {{flush_interval: 0.05}}\nserver: {{admin_key: {ADMIN}}}\n"
        "console: {log_bodies: true}\n"
        f"providers:\n  - name: up\n    protocol: openai\n    base_url: {up.url}/v1\n"
        f"    accounts: [{{api_key: {CONFIG_ACCOUNT}, name: from-config}}]\n"
        "models:\n  - name: m\n    targets: [{provider: up, model: gpt-fake}]\n"
    )
    admin = {"authorization": f"Bearer {ADMIN}"}
    seen: list[str] = []
    try:
        with caplog.at_level(logging.DEBUG), GatewayServer(cfg) as gw, httpx.Client(base_url=gw.url) as c:
            for name, key in (("canary", CANARY), ("works", UPSTREAM_OK)):
                r = c.post(
                    "/admin/accounts", json={"provider": "up", "name": name, "api_key": key}, headers=admin
                )
                assert r.status_code < 300, r.text
                seen.append(r.text)
            r = c.post("/admin/keys", json={"name": "team", "budget_usd": 5}, headers=admin)
            assert r.status_code == 201, r.text
            secret = r.json()["secret"]  # shown here once, by design: the one answer not checked
            client = {"authorization": f"Bearer {secret}"}
            chat = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
            for stream in (
                False,
                True,
                False,
                True,
            ):  # retried past the rejected accounts to the one that works
                r = c.post("/v1/chat/completions", json={**chat, "stream": stream}, headers=client)
                assert r.status_code == 200, r.text
                seen.append(r.text)
            assert set(up.keys_seen()) == {CANARY, CONFIG_ACCOUNT, UPSTREAM_OK}  # each went upstream
            seen.append(
                c.post("/v1/chat/completions", json=chat, headers={"authorization": "Bearer sg-x"}).text
            )
            seen.append(c.post("/v1/chat/completions", json=chat, headers=client | {"x": "y"}).text)
            deadline = time.monotonic() + 30
            while '"requests":5' not in c.get("/admin/usage?since=1h", headers=admin).text.replace(" ", ""):
                assert time.monotonic() < deadline, "the ledger rows never arrived"
                time.sleep(0.05)
            for path in (
                "/admin/accounts",
                "/admin/audit",
                "/admin/keys",
                "/admin/usage?since=1h&by=account",
                "/admin/usage/recent",
                "/admin/openapi.json",
                "/metrics",
            ):
                r = c.get(path, headers=admin)
                assert r.status_code == 200, (path, r.text)
                seen.append(r.text)
            seen += _console(c, chat)
    finally:
        up.stop()
    assert any('account="works"' in text or "works" in text for text in seen)  # names are there, keys not
    files = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("smolgate.db"))
    outputs = [*enumerate(seen), ("logs", caplog.text), ("store", files.decode("latin-1"))]
    for value in (CANARY, UPSTREAM_OK, CONFIG_ACCOUNT, ADMIN, secret):
        for where, text in outputs:
            assert value not in text and value[-12:] not in text, (value[:12], where)


def _console(c: httpx.Client, chat: dict[str, object]) -> list[str]:
    """Every console answer, after the rejected accounts are enabled again so captured upstream calls meet
    them (their error bodies quote the key)."""
    r = c.post("/ui/api/session", json={"admin_key": ADMIN})  # the session cookie stays in c's jar
    assert r.status_code == 200, r.text
    pg = {"x-smolgate-csrf": r.json()["csrf"], "x-smolgate-wire": "capture"}
    seen, statuses = [r.text], []
    for name in ("canary", "from-config", "works"):
        seen.append(c.post(f"/admin/accounts/{name}/test", headers=pg).text)
    for stream in (False, True, False, True):
        for name in ("canary", "from-config"):
            assert c.post(f"/admin/accounts/{name}/enable", headers=pg).status_code == 200
        r = c.post("/v1/chat/completions", json={**chat, "stream": stream}, headers=pg)
        assert r.status_code == 200, r.text
        rid = r.headers["x-request-id"]
        wire = c.get(f"/admin/wire/{rid}")
        statuses += [u["status"] for u in wire.json()["upstream"]]
        seen += [r.text, wire.text, c.get(f"/admin/requests/{rid}").text]
    assert 401 in statuses  # a capture did record a rejected key's quoting error body
    seen += [c.get("/admin/requests").text, c.get("/admin/routes").text]
    seen.append(c.post("/admin/routes/m/try", headers=pg).text)
    return seen
