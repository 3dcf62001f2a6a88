"""Replicas sharing one real redis-server: one combined cap, one cooldown, survival of a Redis outage."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

from smolgate.errors import ErrorKind, GatewayError

from .util import acct, make_pools, prov, status

REPLICA = str(Path(__file__).with_name("replica.py"))


def _run(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, REPLICA, *args], stdout=subprocess.PIPE, text=True)


def test_two_processes_share_one_concurrency_cap(redis_url: str) -> None:
    procs = [_run("hammer", redis_url, "3", "150") for _ in range(2)]
    results = [orjson.loads(p.communicate(timeout=60)[0].strip().splitlines()[-1]) for p in procs]
    assert all(p.returncode == 0 for p in procs)
    import redis

    r = redis.Redis.from_url(redis_url)
    assert int(r.get("test:live")) == 0
    # The combined number of holders, counted atomically across both processes, never passed the cap ...
    assert max(x["peak"] for x in results) <= 3, results
    # ... and reached it (with 2×150 clients the cap binds, so the assertion above is meaningful).
    assert max(x["peak"] for x in results) == 3, results


async def test_crashed_replica_slots_expire(redis_url: str) -> None:
    p = _run("hold-and-crash", redis_url, "2")
    assert p.communicate(timeout=30)[0].strip() == "held"
    pools = await make_pools(
        "redis", [prov("shared", [acct("only", max_concurrency=2)], queue_timeout=0.1)], redis_url
    )
    with pytest.raises(GatewayError):  # the dead replica's slots still count ...
        await pools.get("shared").acquire()
    await asyncio.sleep(1.1)  # ... until their 1 s lease runs out
    lease = await pools.get("shared").acquire()
    await lease.release()
    await pools.close()


async def test_cooldown_breaker_and_disable_are_shared(redis_url: str) -> None:
    cfg = [prov("p", [acct("a"), acct("b")], failures=2, cooldown=5)]
    one = await make_pools("redis", cfg, redis_url)
    two = await make_pools("redis", cfg, redis_url)
    lease = await one.get("p").acquire(exclude=frozenset({"b"}))
    lease.record(status=429, headers={"retry-after": "2"})
    await lease.release()
    lease = await one.get("p").acquire(exclude=frozenset({"a"}))
    lease.record(status=401)
    await lease.release()
    await one.drain()
    # The other replica never saw these responses, yet refuses both accounts, with the right wait.
    with pytest.raises(GatewayError) as err:
        await two.get("p").acquire()
    assert err.value.kind is ErrorKind.RATE_LIMITED and 1.5 <= err.value.retry_after <= 2.0
    assert status(two, "a").state == "cooling" and status(two, "b").state == "disabled"
    assert "401" in status(two, "b").reason

    cfg3 = [prov("q", [acct("c")], failures=2, cooldown=5)]
    one, two = await make_pools("redis", cfg3, redis_url), await make_pools("redis", cfg3, redis_url)
    for pools in (one, two):  # one failure in each replica: 2 consecutive failures in all
        lease = await pools.get("q").acquire()
        lease.record(status=503)
        await lease.release()
        await pools.drain()
    assert status(two, "c").state == "open"
    with pytest.raises(GatewayError):
        await one.get("q").acquire()
    assert status(one, "c").state == "open"
    for pools in (one, two):
        await pools.close()


async def test_replaced_key_clears_shared_disable(redis_url: str) -> None:
    one = await make_pools("redis", [prov("p", [acct("a")])], redis_url)
    lease = await one.get("p").acquire()
    lease.record(status=401)
    await lease.release()
    await one.drain()
    fixed = prov("p", [acct("a")])
    fixed.accounts[0].api_key = "sk-new-key"
    two = await make_pools("redis", [fixed], redis_url)
    lease = await two.get("p").acquire()  # a new key: the old key's 401 does not apply
    await lease.release()
    await one.close()
    await two.close()


async def test_redis_outage_degrades_then_recovers(private_redis, caplog: pytest.LogCaptureFixture) -> None:  # type: ignore[no-untyped-def]
    caplog.set_level(logging.WARNING, logger="smolgate.pool")
    cfg = [prov("p", [acct("a", max_concurrency=1)], queue_timeout=0.15)]
    one = await make_pools("redis", cfg, private_redis.url, probe_interval=0.1)
    two = await make_pools("redis", cfg, private_redis.url, probe_interval=0.1)

    async def combined_cap_holds() -> bool:
        lease = await one.get("p").acquire()
        try:
            await two.get("p").acquire()
        except GatewayError:
            return True
        finally:
            await lease.release()
        return False

    assert await combined_cap_holds()
    private_redis.stop()
    held = []
    for _ in range(3):  # still serving, from local state
        for pools in (one, two):
            lease = await pools.get("p").acquire()
            held.append(lease)
        for lease in held:
            lease.record(status=200)
            await lease.release()
        held.clear()
    warnings = [r for r in caplog.records if "unreachable" in r.getMessage()]
    assert len(warnings) == 2  # one per replica, not one per request
    assert "127.0.0.1" in warnings[0].getMessage()
    private_redis.start()
    end = time.monotonic() + 5
    while not (one.shared.up and two.shared.up) and time.monotonic() < end:
        await asyncio.sleep(0.05)
    assert one.shared.up and two.shared.up
    assert any("reachable again" in r.getMessage() for r in caplog.records)
    assert await combined_cap_holds()
    await one.close()
    await two.close()


async def test_refresh_shows_the_fleet(redis_url: str) -> None:
    cfg = [prov("p", [acct("a", max_concurrency=5), acct("b")])]
    one, two = await make_pools("redis", cfg, redis_url), await make_pools("redis", cfg, redis_url)
    held = [await one.get("p").acquire(exclude=frozenset({"b"})) for _ in range(2)]
    lease = await one.get("p").acquire(exclude=frozenset({"a"}))
    lease.record(status=403)
    await lease.release()
    await one.drain()
    assert status(two, "b").state == "healthy"  # not seen yet: two never touched b
    await two.refresh()
    assert status(two, "b").state == "disabled" and "403" in status(two, "b").reason
    assert status(two, "a").in_flight_all_replicas == 2 and status(two, "a").in_flight == 0
    for x in held:
        await x.release()
    await one.close()
    await two.close()


async def test_unreachable_at_startup_still_serves(caplog: pytest.LogCaptureFixture) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    caplog.set_level(logging.WARNING, logger="smolgate.pool")
    pools = await make_pools("redis", [prov("p", [acct("a")])], f"redis://:hunter2@127.0.0.1:{port}/0")
    lease = await pools.get("p").acquire()
    await lease.release()
    msgs = [r.getMessage() for r in caplog.records if "unreachable" in r.getMessage()]
    assert len(msgs) == 1 and "hunter2" not in msgs[0]
    await pools.close()
