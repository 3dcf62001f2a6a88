"""Cooldowns on 429, the circuit breaker, disable-on-401 — for a single-account provider too."""

from __future__ import annotations

import time

import msgspec
import pytest

from smolgate.errors import ErrorKind, GatewayError

from .util import acct, make_pools, prov, status


async def _once(pool, **record):  # type: ignore[no-untyped-def]
    lease = await pool.acquire()
    lease.record(**record)
    await lease.release()
    return lease.account.name


async def _refused(pool, kind: ErrorKind = ErrorKind.RATE_LIMITED) -> GatewayError:  # type: ignore[no-untyped-def]
    with pytest.raises(GatewayError) as err:
        await pool.acquire()
    assert err.value.kind is kind
    return err.value


async def test_429_with_retry_after_cools_down_and_recovers(backend: str, state_url: str | None) -> None:
    pools = await make_pools(backend, [prov("one", [acct("solo")])], state_url)
    pool = pools.get("one")
    t0 = time.time()
    await _once(pool, status=429, headers={"Retry-After": "1"})
    s = status(pools, "solo")
    assert s.state == "cooling" and s.until == pytest.approx(t0 + 1, rel=0, abs=0.1)
    assert "429" in s.reason and s.recent_errors and "429" in s.recent_errors[-1]
    err = await _refused(pool)
    assert 0.7 <= err.retry_after <= 1.0  # at once, with the honest time to recovery
    await _sleep_until(t0 + 1.05)
    await _once(pool, status=200)
    assert status(pools, "solo").state == "healthy"
    await pools.close()


async def _sleep_until(t: float) -> None:
    import asyncio

    await asyncio.sleep(max(0.0, t - time.time()))


async def test_429_without_retry_after_backs_off_exponentially(backend: str, state_url: str | None) -> None:
    pools = await make_pools(backend, [prov("one", [acct("solo")])], state_url, backoff_base=0.2)
    pool = pools.get("one")
    waits = []
    for _ in range(3):
        t = time.time()
        await _once(pool, status=429)
        s = status(pools, "solo")
        assert s.state == "cooling"
        waits.append(s.until - t)
        await _refused(pool)
        await _sleep_until(s.until + 0.01)
    # 0.2·2^k with 50–100 % jitter: [0.1, 0.2], [0.2, 0.4], [0.4, 0.8]
    for k, w in enumerate(waits):
        assert 0.2 * 2**k * 0.5 - 0.01 <= w <= 0.2 * 2**k + 0.01, waits
    await _once(pool, status=200)  # success resets the backoff level
    t = time.time()
    await _once(pool, status=429)
    assert status(pools, "solo").until - t <= 0.21
    await pools.close()


async def test_429_reset_headers_set_the_cooldown(backend: str, state_url: str | None) -> None:
    pools = await make_pools(backend, [prov("one", [acct("solo")])], state_url, backoff_base=30)
    t = time.time()
    await _once(
        pools.get("one"),
        status=429,
        headers={"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "300ms"},
    )
    assert status(pools, "solo").until == pytest.approx(t + 0.3, rel=0, abs=0.05)  # not the 15–30 s backoff
    await pools.close()


async def test_breaker_opens_after_n_failures_then_half_opens(backend: str, state_url: str | None) -> None:
    pools = await make_pools(backend, [prov("one", [acct("solo")], failures=3, cooldown=0.3)], state_url)
    pool = pools.get("one")
    await _once(pool, status=500)
    await _once(pool, error=ErrorKind.TIMEOUT)
    assert status(pools, "solo").state == "healthy"  # 2 < 3
    t = time.time()
    await _once(pool, status=502)
    s = status(pools, "solo")
    assert s.state == "open" and s.until == pytest.approx(t + 0.3, rel=0, abs=0.05) and "502" in s.reason
    # a tripped breaker is an upstream that is down: 503 with when to come back, not a rate limit
    assert 0.2 <= (await _refused(pool, ErrorKind.OVERLOADED)).retry_after <= 0.3
    await _sleep_until(s.until + 0.01)
    probe = await pool.acquire()  # half-open: exactly one probe
    assert status(pools, "solo").state == "half_open"
    await _refused(pool, ErrorKind.OVERLOADED)
    probe.record(error=ErrorKind.UPSTREAM)  # probe fails → open again
    await probe.release()
    await pools.drain()
    s = status(pools, "solo")
    assert s.state == "open"
    await _sleep_until(s.until + 0.01)
    probe = await pool.acquire()
    probe.record(status=200)
    await probe.release()
    await pools.drain()
    assert status(pools, "solo").state == "healthy"
    leases = [await pool.acquire() for _ in range(3)]  # closed: no longer one at a time
    for lease in leases:
        await lease.release()
    await pools.close()


async def test_success_resets_failure_count(backend: str, state_url: str | None) -> None:
    pools = await make_pools(backend, [prov("one", [acct("solo")], failures=2, cooldown=5)], state_url)
    pool = pools.get("one")
    for _ in range(4):
        await _once(pool, status=503)
        await _once(pool, status=200)
    await pools.drain()
    assert status(pools, "solo").state == "healthy"
    await pools.close()


async def test_401_disables_and_is_reported(backend: str, state_url: str | None) -> None:
    pools = await make_pools(backend, [prov("p", [acct("good"), acct("bad")])], state_url)
    pool = pools.get("p")
    for _ in range(4):
        lease = await pool.acquire()
        lease.record(status=401 if lease.account.name == "bad" else 200)
        await lease.release()
    s = status(pools, "bad")
    assert s.state == "disabled" and "401" in s.reason and s.until is None
    assert {await _once(pool, status=200) for _ in range(5)} == {"good"}
    snap = msgspec.json.encode(pools.snapshot())  # JSON-serialisable as is
    assert b"sk-secret" not in snap and b"disabled" in snap
    with pytest.raises(GatewayError) as err:
        await pool.acquire(exclude=frozenset({"good"}))
    assert "disabled: bad" in err.value.message and err.value.retry_after is None
    await pools.close()


async def test_403_and_config_disabled(backend: str, state_url: str | None) -> None:
    pools = await make_pools(backend, [prov("p", [acct("a"), acct("off", enabled=False)])], state_url)
    await _once(pools.get("p"), status=403)
    assert status(pools, "a").state == "disabled" and "403" in status(pools, "a").reason
    assert status(pools, "off").state == "disabled"
    err = await _refused(pools.get("p"), ErrorKind.UPSTREAM)  # keys the upstream refused: 502, never a 429
    assert err.retry_after is None and err.status == 502
    await pools.close()


async def test_client_errors_do_not_hurt_health(backend: str, state_url: str | None) -> None:
    pools = await make_pools(backend, [prov("p", [acct("a")], failures=1)], state_url)
    for code in (400, 404, 413, 422):
        await _once(pools.get("p"), status=code)
    assert status(pools, "p" and "a").state == "healthy"
    await pools.close()


async def test_stream_that_opened_then_died_counts_as_a_failure(backend: str, state_url: str | None) -> None:
    """The dispatcher records 200 when a stream opens and the error if it dies: the breaker must see it."""
    pools = await make_pools(backend, [prov("one", [acct("solo")], failures=2, cooldown=5)], state_url)
    pool = pools.get("one")
    for _ in range(2):
        lease = await pool.acquire()
        lease.record(status=200, headers={"x-ratelimit-remaining-requests": "99"})
        lease.record(error=ErrorKind.UPSTREAM)
        await lease.release()
    await pools.drain()
    assert status(pools, "solo").state == "open"
    await pools.close()
