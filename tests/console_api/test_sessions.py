"""Console sessions on a real gateway (admin key, SQLite store, fake upstreams): sign-in sets a strict cookie,
the cookie opens the admin API (state changes only with the CSRF header), tampered / expired / other-key /
signed-out cookies are refused, a new admin key ends every session, failed sign-ins are throttled and every
sign-in and sign-out is audited."""

from __future__ import annotations

import re
import time
from contextlib import closing

import httpx
import openai
import pytest

from smolgate.config import load_config
from smolgate.console.sessions import COOKIE, Signer
from smolgate.server.admin import ROUTES
from tests.console_api.conftest import ADMIN, console_config, signed_in
from tests.gateway_server import GatewayServer

CLIENT = "sk-client-console-0123456789"
KEYED = f"keys: [{{key: {CLIENT}, name: team}}]\nserver: {{admin_key: {ADMIN}, auth_failures: 1000}}\n"
SECURITY = {
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
}


@pytest.fixture(scope="module")
def gw(upstreams, tmp_path_factory):
    """Client keys required (so a session visibly stands in for one); the config file is reloadable."""
    d = tmp_path_factory.mktemp("sessions")
    path = d / "smolgate.yaml"
    path.write_text(console_config(upstreams, d).replace(f"server: {{admin_key: {ADMIN}}}\n", KEYED))
    with GatewayServer(load_config(path)) as server:
        server.app.runtime.config_path = str(path)
        yield server


def audit(gw: GatewayServer) -> list[dict]:
    r = httpx.get(gw.url + "/admin/audit", headers={"x-api-key": ADMIN})
    assert r.status_code == 200, r.text
    return r.json()["entries"]


def test_sign_in_sets_a_strict_session_cookie_and_answers_its_csrf_token(gw):
    r = httpx.post(gw.url + "/ui/api/session", json={"admin_key": ADMIN})
    assert r.status_code == 200, r.text
    cookie = r.headers["set-cookie"]
    assert cookie.startswith(f"{COOKIE}=v1.")
    for flag in ("HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=43200"):
        assert flag in cookie, flag
    assert "Secure" not in cookie  # plain HTTP: a Secure cookie would never come back
    body = r.json()
    assert set(body) == {"csrf", "expires"} and abs(body["expires"] - (time.time() + 43200)) < 60
    assert ADMIN not in r.text and ADMIN not in cookie
    assert r.headers["cache-control"] == "no-store"
    assert "frame-ancestors 'none'" in r.headers["content-security-policy"]
    assert all(r.headers[k] == v for k, v in SECURITY.items())
    # behind a TLS-terminating proxy (or served over HTTPS) the cookie is Secure
    r = httpx.post(
        gw.url + "/ui/api/session", json={"admin_key": ADMIN}, headers={"x-forwarded-proto": "https"}
    )
    assert "; Secure" in r.headers["set-cookie"]
    rows = [e for e in audit(gw) if e["action"] == "console.signin"]
    assert rows and rows[0]["actor"] == "console" and rows[0]["detail"]["ok"] is True


def test_the_session_answers_itself_and_opens_the_admin_api(gw):
    c, csrf = signed_in(gw)
    with closing(c):
        r = c.get("/ui/api/session")
        assert r.status_code == 200 and r.json()["csrf"] == csrf
        assert c.get("/admin/health").status_code == 200
        assert c.get("/admin/accounts").status_code == 200
        # a state change needs the CSRF header: missing or wrong → 403 in the admin API's error shape
        for headers in ({}, {"x-smolgate-csrf": "nope"}, {"x-smolgate-csrf": csrf[:-1]}):
            r = c.post("/admin/keys", json={"name": "k"}, headers=headers)
            assert r.status_code == 403, r.text
            assert "x-smolgate-csrf" in r.json()["error"]["message"]
        r = c.post("/admin/keys", json={"name": "from-console"}, headers={"x-smolgate-csrf": csrf})
        assert r.status_code == 201, r.text
        assert c.delete("/admin/accounts/nobody").status_code == 403  # refused before it is looked up
    r = httpx.post(gw.url + "/admin/keys", json={"name": "from-the-api"}, headers={"x-api-key": ADMIN})
    assert r.status_code == 201, r.text
    # the audit log tells a change made in the console from one made with the admin key
    actors = {e["detail"]["name"]: e["actor"] for e in audit(gw) if e["action"] == "key.create"}
    assert (actors["from-console"], actors["from-the-api"]) == ("console", "admin-api")


def test_without_a_session_every_admin_route_and_the_session_call_answer_401(gw):
    bad = {"cookie": f"{COOKIE}=v1.{'0' * 32}.{int(time.time()) + 999}.forged"}
    for route in ROUTES:
        path = re.sub(r"\{\w+\}", "x", route.path)
        for headers in ({}, bad):
            r = httpx.request(route.method, gw.url + path, headers=headers)
            assert r.status_code == 401, (route.method, path, headers, r.text)
    for headers in ({}, bad):
        assert httpx.get(gw.url + "/ui/api/session", headers=headers).status_code == 401
    assert httpx.delete(gw.url + "/ui/api/session").status_code == 401
    assert httpx.post(gw.url + "/ui/api/session", json={"admin_key": "wrong"}).status_code == 401
    assert httpx.post(gw.url + "/ui/api/session", json={"admin_key": CLIENT}).status_code == 401
    rows = [e for e in audit(gw) if e["action"] == "console.signin" and e["detail"]["ok"] is False]
    assert len(rows) >= 2


def _token(c: httpx.Client) -> str:
    return c.cookies[COOKIE]


def test_tampered_expired_and_foreign_cookies_are_refused(gw):
    c, _ = signed_in(gw)
    token = _token(c)
    c.close()
    v, sid, exp, mac = token.split(".")
    other_sid = ("1" if sid[0] != "1" else "2") + sid[1:]
    past, foreign = Signer(ADMIN.encode(), 60), Signer(b"another-admin-key-0123", 43200)
    forged = [
        f"{v}.{other_sid}.{exp}.{mac}",  # another session id under this signature
        f"{v}.{sid}.{int(exp) + 3600}.{mac}",  # a longer life
        f"{v}.{sid}.{exp}.{mac[:-2]}AA",  # the signature itself
        f"v2.{sid}.{exp}.{mac}",
        past.issue(now=time.time() - 120)[0],  # signed right, but expired
        foreign.issue()[0],  # signed under another admin key
        token + "x" * 300,
    ]
    for bad in forged:
        h = {"cookie": f"{COOKIE}={bad}"}
        assert httpx.get(gw.url + "/admin/health", headers=h).status_code == 401, bad
        assert httpx.get(gw.url + "/ui/api/session", headers=h).status_code == 401, bad
    h = {"cookie": f"{COOKIE}={token}"}
    assert httpx.get(gw.url + "/admin/health", headers=h).status_code == 200  # the real one still works
    # among other localhost apps' cookies, malformed ones included, as a browser sends them
    h = {"cookie": f'prefs={{"a": 1, "b": [2]}}; x=\\"y; {COOKIE}={token}; theme=dark'}
    assert httpx.get(gw.url + "/admin/health", headers=h).status_code == 200


def test_sign_out_revokes_the_session(gw):
    c, csrf = signed_in(gw)
    token = _token(c)
    with closing(c):
        assert c.delete("/ui/api/session").status_code == 403  # without its CSRF header
        r = c.delete("/ui/api/session", headers={"x-smolgate-csrf": csrf})
        assert r.status_code == 204
        assert "Max-Age=0" in r.headers["set-cookie"]
    h = {"cookie": f"{COOKIE}={token}"}  # the same cookie, kept by someone who copied it
    assert httpx.get(gw.url + "/admin/health", headers=h).status_code == 401
    assert httpx.get(gw.url + "/ui/api/session", headers=h).status_code == 401
    assert any(e["action"] == "console.signout" and e["actor"] == "console" for e in audit(gw))


def test_a_session_is_an_admin_caller_on_client_routes_only_with_its_csrf_header(gw):
    c, csrf = signed_in(gw)
    chat = {"model": "via-openai", "messages": [{"role": "user", "content": "hi"}]}
    with closing(c):
        assert c.post("/v1/chat/completions", json=chat).status_code == 401  # a cookie alone opens nothing
        r = c.post("/v1/chat/completions", json=chat, headers={"x-smolgate-csrf": "wrong"})
        assert r.status_code == 401
        r = c.post("/v1/chat/completions", json=chat, headers={"x-smolgate-csrf": csrf})
        assert r.status_code == 200, r.text
        rid = r.headers["x-request-id"]
        found = c.get(f"/admin/requests/{rid}").json()
        assert found["key_id"] == "console"
    # the client key still works as before, and the SDK never sees the console
    sdk = openai.OpenAI(base_url=gw.url + "/v1", api_key=CLIENT, max_retries=0)
    assert sdk.chat.completions.create(**chat).choices[0].message.content


def test_a_new_admin_key_ends_every_session(gw):
    c, csrf = signed_in(gw)
    new = "admin-rotated-abcdef0123456789"
    path = gw.app.runtime.config_path
    assert path is not None
    with open(path) as f:
        text = f.read()
    with closing(c):
        with open(path, "w") as f:
            f.write(text.replace(ADMIN, new))
        try:
            r = c.post("/admin/reload", headers={"x-smolgate-csrf": csrf})
            assert r.status_code == 200, r.text
            assert c.get("/admin/health").status_code == 401  # signed under the old key's derivation
            assert c.get("/ui/api/session").status_code == 401
            c2, _ = signed_in(gw, new)
            with closing(c2):
                assert c2.get("/admin/health").status_code == 200
        finally:
            with open(path, "w") as f:
                f.write(text)
            r = httpx.post(gw.url + "/admin/reload", headers={"x-api-key": new})
            assert r.status_code == 200, r.text


def test_failed_sign_ins_are_throttled(tmp_path):
    cfg = f"data_dir: {tmp_path}\nserver: {{admin_key: {ADMIN}, auth_failures: 2, auth_backoff: 30}}\n"
    with GatewayServer(cfg) as small:
        for _ in range(2):
            r = httpx.post(small.url + "/ui/api/session", json={"admin_key": "guess"})
            assert r.status_code == 401
        r = httpx.post(small.url + "/ui/api/session", json={"admin_key": ADMIN})  # even the right key waits
        assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1


def test_without_an_admin_key_only_loopback_signs_in_with_an_empty_key(tmp_path):
    with GatewayServer(f"data_dir: {tmp_path}\n") as open_gw:
        assert httpx.post(open_gw.url + "/ui/api/session", json={"admin_key": "x"}).status_code == 403
        proxied = {"x-forwarded-for": "203.0.113.9"}
        r = httpx.post(open_gw.url + "/ui/api/session", json={"admin_key": ""}, headers=proxied)
        assert r.status_code == 403 and "admin key" in r.json()["error"]["message"]
        r = httpx.post(open_gw.url + "/ui/api/session", json={"admin_key": ""})
        assert r.status_code == 200, r.text
        # through a proxy (not a direct loopback client) the admin API stays closed, session or not
        h = {"x-forwarded-for": "203.0.113.9", "cookie": r.headers["set-cookie"].split(";")[0]}
        assert httpx.get(open_gw.url + "/admin/health", headers=h).status_code == 403
