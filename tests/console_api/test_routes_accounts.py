"""`/admin/routes` (+ try) and the accounts' live state and test, against real fake upstreams: targets and
fallbacks as configured, the account that would serve next, a try through each alias (ledger and audit), an
account tested alone (a rejected key reported without the key), and an account cooling down after a 429 with
its reason, its recent errors and the rate-limit headroom the upstream announced."""

from __future__ import annotations

import time
from contextlib import closing

import httpx
import openai
import pytest

from tests.console_api.conftest import ADMIN, signed_in
from tests.control.upstreams import KeysUpstream
from tests.fakes.fault_upstream import FaultUpstream, KeyStats
from tests.fakes.openai_upstream import _err
from tests.gateway_server import GatewayServer

ADMIN_H = {"x-api-key": ADMIN}
GOOD, BAD = "sk-good-0123456789abcdef", "sk-bad-rejected-0123456789"


def test_routes_list_targets_fallbacks_and_the_next_account(gateway, upstreams):
    r = httpx.get(gateway.url + "/admin/routes", headers=ADMIN_H)
    assert r.status_code == 200, r.text
    routes = {v["alias"]: v for v in r.json()["routes"]}
    assert set(routes) == {
        f"via-{p}" for p in ("openai", "anthropic", "gemini", "ollama", "openai-responses")
    }
    v = routes["via-gemini"]
    assert v["targets"] == [{"provider": "up-gemini", "model": "gemini-model", "protocol": "gemini"}]
    assert v["fallbacks"] == [] and v["next_account"] == {"provider": "up-gemini", "account": "up-gemini#0"}


@pytest.mark.parametrize("alias", ["via-openai", "via-anthropic", "via-gemini", "via-ollama"])
def test_try_a_route_through_a_session(gateway, alias):
    c, csrf = signed_in(gateway)
    with closing(c):
        assert c.post(f"/admin/routes/{alias}/try").status_code == 403  # a state change: CSRF needed
        r = c.post(f"/admin/routes/{alias}/try", headers={"x-smolgate-csrf": csrf})
        assert r.status_code == 200, r.text
        got = r.json()
        assert got["ok"] is True and got["status"] == 200 and got["latency_ms"] > 0
        assert got["provider"] == "up-" + alias.removeprefix("via-") and got["account"].endswith("#0")
        assert "Reply with the word OK." in got["text"]  # the fakes echo the prompt
        assert c.post("/admin/routes/nope/try", headers={"x-smolgate-csrf": csrf}).status_code == 404
        entries = c.get("/admin/audit").json()["entries"]
    assert any(e["action"] == "route.try" and e["target"] == alias for e in entries)


def test_a_tried_route_reaches_the_ledger_as_the_admin(gateway):
    t0 = time.time()  # this try's row (the ledger also holds the other tests' tries, written in batches)
    r = httpx.post(gateway.url + "/admin/routes/via-ollama/try", headers=ADMIN_H)
    assert r.json()["ok"] is True
    deadline = time.monotonic() + 30
    while True:
        rows = httpx.get(gateway.url + "/admin/usage/recent?limit=50", headers=ADMIN_H).json()["rows"]
        found = [row for row in rows if row["key_id"] == "admin" and row["ts"] >= t0]
        if found:
            break
        assert time.monotonic() < deadline, rows
        time.sleep(0.05)
    assert [row["alias"] for row in found] == ["via-ollama"]


@pytest.fixture(scope="module")
def keyed(tmp_path_factory):
    up = KeysUpstream({GOOD}, echo=True).start()  # quotes a rejected key whole in its error
    cfg = (
        f"data_dir: {tmp_path_factory.mktemp('acct')}\nserver: {{admin_key: {ADMIN}}}\n"
        f"providers:\n  - name: up\n    protocol: openai\n    base_url: {up.url}/v1\n"
        f"    accounts: [{{name: good, api_key: {GOOD}}}, {{name: bad, api_key: {BAD}}}]\n"
        "models:\n  - name: m\n    targets: [{provider: up, model: gpt-fake}]\n"
    )
    with GatewayServer(cfg) as gw:
        yield gw, up
    up.stop()


def test_an_account_is_tested_alone_and_a_rejected_key_is_never_shown(keyed):
    gw, up = keyed
    up.reset()
    r = httpx.post(gw.url + "/admin/accounts/good/test", headers=ADMIN_H)
    assert r.status_code == 200 and r.json()["ok"] is True and r.json()["status"] == 200
    r = httpx.post(gw.url + "/admin/accounts/bad/test", headers=ADMIN_H)
    got = r.json()
    assert r.status_code == 200 and got["ok"] is False and got["status"] == 401
    assert "rejected the gateway's credentials" in got["error"]
    assert BAD not in r.text and BAD[-12:] not in r.text
    assert up.keys_seen() == [GOOD, BAD]  # each went to its own account, once
    assert httpx.post(gw.url + "/admin/accounts/nobody/test", headers=ADMIN_H).status_code == 404
    # a test is a probe, not traffic: the rejected key's account is not disabled by it
    states = {
        a["account"]: a["state"]
        for a in httpx.get(gw.url + "/admin/accounts", headers=ADMIN_H).json()["accounts"]
    }
    assert states == {"good": "healthy", "bad": "healthy"}
    entries = httpx.get(gw.url + "/admin/audit", headers=ADMIN_H).json()["entries"]
    tests = {e["target"]: e["detail"] for e in entries if e["action"] == "account.test"}
    assert tests["up/good"]["ok"] is True and tests["up/bad"]["ok"] is False


class LongThrottle(FaultUpstream):
    """Adds `429_long`: a 429 asking for 10 minutes (the cooldown outlasts the test, however slow the host)."""

    async def _inject(self, mode: str, key: str, request, st: KeyStats):  # type: ignore[no-untyped-def]
        if mode == "429_long":
            return _err(429, "Rate limit reached", "rate_limit_exceeded", {"Retry-After": "600"})
        return await super()._inject(mode, key, request, st)


def test_accounts_show_cooldowns_recent_errors_and_announced_headroom(tmp_path):
    fault = LongThrottle({"k-429": "429_long", "k-count": "countdown"}, budget=50, window=60).start()
    cfg = (
        f"data_dir: {tmp_path}\nserver: {{admin_key: {ADMIN}}}\n"
        f"providers:\n  - name: f\n    protocol: openai\n    base_url: {fault.url}/v1\n    strategy: round_robin\n"
        "    accounts: [{name: throttled, api_key: k-429}, {name: counted, api_key: k-count}]\n"
        "models:\n  - name: m\n    targets: [{provider: f, model: gpt-fake}]\n"
    )
    try:
        with GatewayServer(cfg) as gw:
            sdk = openai.OpenAI(base_url=gw.url + "/v1", api_key="unused", max_retries=0)
            for _ in range(3):  # round robin meets the throttled account, then only the counted one
                sdk.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
            rows = httpx.get(gw.url + "/admin/accounts", headers=ADMIN_H).json()["accounts"]
    finally:
        fault.stop()
    acct = {a["account"]: a for a in rows}
    now = time.time()
    hot = acct["throttled"]
    assert hot["state"] == "cooling" and now + 500 < hot["until"] <= now + 601 and "429" in hot["reason"]
    [err] = hot["recent_errors"]
    assert err["status"] == 429 and err["kind"] == "rate_limited" and abs(err["ts"] - now) < 30
    assert "cooling" in err["message"] and hot["ratelimit"] is None and hot["in_flight"] == 0
    ok = acct["counted"]
    assert ok["state"] == "healthy" and ok["recent_errors"] == [] and ok["until"] is None
    rl = ok["ratelimit"]
    assert 0 < rl["requests_remaining"] < 50 and rl["tokens_remaining"] is None
    assert now < rl["reset"] <= now + 61


def test_the_next_account_of_a_pool_with_several_is_shown_and_looking_does_not_move_it(keyed):
    # (a deep copy of the live accounts raised: the route list answered 500 once a pool had two accounts)
    gw, _ = keyed
    seen = []
    for _ in range(3):
        r = httpx.get(gw.url + "/admin/routes", headers=ADMIN_H)
        assert r.status_code == 200, r.text
        (route,) = r.json()["routes"]
        seen.append(route["next_account"])
    assert seen[0] == seen[1] == seen[2] and seen[0]["provider"] == "up"
    assert seen[0]["account"] in ("good", "bad")
