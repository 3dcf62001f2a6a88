"""Class 12: an address that keeps failing authentication is made to wait (429 + Retry-After in its own
protocol's shape, without its key being checked); a success forgets it; other addresses are unaffected;
memory stays bounded however many addresses fail."""

from __future__ import annotations

import time
import tracemalloc

import httpx
import pytest

from smolgate.server.throttle import AuthThrottle
from tests.gateway_server import GatewayServer

KEY = "sk-throttle-client-0001"
ADMIN = "sk-throttle-admin-0001"
CFG = (
    "providers:\n  - name: up\n    protocol: openai\n    base_url: http://127.0.0.1:9/v1\n"
    "models:\n  - name: m\n    targets: [{provider: up, model: x}]\n"
    f"keys:\n  - {{key: {KEY}}}\n"
    f"server:\n  auth_failures: 3\n  auth_backoff: 1.5\n  admin_key: {ADMIN}\n"
)

GOOD = {"authorization": f"Bearer {KEY}"}
BAD = {"authorization": "Bearer sk-guess-0000"}


@pytest.fixture
def gw():
    with GatewayServer(CFG) as server:
        yield server


def models(gw: GatewayServer, headers: dict[str, str]) -> httpx.Response:
    return httpx.get(gw.url + "/v1/models", headers=headers)


def test_repeated_failures_are_made_to_wait_then_a_success_resets(gw):
    assert [models(gw, BAD).status_code for _ in range(3)] == [401, 401, 401]
    r = models(gw, GOOD)  # even the right key waits: the key is not checked while throttled
    assert r.status_code == 429 and 0 < int(r.headers["retry-after"]) <= 2
    assert "failed authentications" in r.json()["error"]["message"]
    deadline = time.monotonic() + 5
    while models(gw, GOOD).status_code == 429 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert models(gw, GOOD).status_code == 200
    # the success forgot the failures: two more guesses are ordinary 401s again
    assert [models(gw, BAD).status_code for _ in range(2)] == [401, 401]
    assert models(gw, GOOD).status_code == 200


@pytest.mark.parametrize(
    "path,body,shape",
    [
        (
            "/v1/messages",
            {"model": "m", "max_tokens": 5, "messages": []},
            lambda j: j["error"]["type"] == "rate_limit_error",
        ),
        (
            "/v1beta/models/m:generateContent",
            {"contents": []},
            lambda j: j["error"]["status"] == "RESOURCE_EXHAUSTED",
        ),
        ("/api/chat", {"model": "m", "messages": []}, lambda j: isinstance(j["error"], str)),
    ],
)
def test_the_wait_is_answered_in_the_clients_protocol(gw, path, body, shape):
    for _ in range(3):
        assert httpx.post(gw.url + path, json=body, headers=BAD).status_code == 401
    r = httpx.post(gw.url + path, json=body, headers=BAD)
    assert r.status_code == 429 and r.headers.get("retry-after") and shape(r.json())


def test_admin_key_guessing_is_throttled_too_and_other_addresses_are_unaffected(gw):
    for _ in range(3):
        assert (
            httpx.get(gw.url + "/admin/accounts", headers={"authorization": "Bearer nope-000000"}).status_code
            == 401
        )
    assert (
        httpx.get(gw.url + "/admin/accounts", headers={"authorization": f"Bearer {ADMIN}"}).status_code == 429
    )
    # a client behind the (trusted, local) proxy header is another address
    other = {**GOOD, "x-forwarded-for": "198.51.100.7"}
    assert models(gw, other).status_code == 200


def test_the_backoff_grows_and_is_capped():
    t = AuthThrottle(failures=2, max_backoff=8.0)
    waits = []
    for _ in range(7):
        t.failed("192.0.2.1")
        waits.append(round(t.wait("192.0.2.1") or 0))
    assert waits == [0, 1, 2, 4, 8, 8, 8]


def test_memory_is_bounded_however_many_addresses_fail():
    t = AuthThrottle(failures=3, max_backoff=30.0, capacity=1000)
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        for i in range(50_000):
            t.failed(f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}")
        grown = sum(s.size_diff for s in tracemalloc.take_snapshot().compare_to(before, "filename"))
    finally:
        tracemalloc.stop()
    assert len(t) == 1000
    assert grown < 1_000_000
    # one host's IPv6 addresses (its /64) count as one address: rotating them gains nothing
    t6 = AuthThrottle(failures=3, max_backoff=30.0)
    for i in range(3):
        t6.failed(f"2001:db8:1:2::{i + 1:x}")
    assert t6.wait("2001:db8:1:2::ffff") is not None and t6.wait("2001:db8:1:3::1") is None
