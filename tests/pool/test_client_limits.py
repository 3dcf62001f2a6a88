"""Per-client-key rpm and concurrency limits, in-process and shared through Redis."""

from __future__ import annotations

import pytest

from smolgate.config import ClientKey
from smolgate.errors import ErrorKind, GatewayError
from smolgate.pool import ClientLimiter, Pools


async def _limiter(backend: str, url: str | None, keys: list[ClientKey]) -> tuple[ClientLimiter, Pools]:
    pools = await Pools.create([], url if backend == "redis" else None)
    return ClientLimiter(keys, pools), pools


async def test_rpm(backend: str, state_url: str | None) -> None:
    key = ClientKey(key="ck-secret-1", name="team-a", rpm=3)
    lim, pools = await _limiter(backend, state_url, [key])
    for _ in range(3):
        await (await lim.acquire(key))()
    with pytest.raises(GatewayError) as err:
        await lim.acquire(key)
    e = err.value
    assert e.kind is ErrorKind.RATE_LIMITED and e.status == 429
    assert "rate limit (3 requests per minute)" in e.message and "team-a" in e.message
    assert "ck-secret" not in e.message and 1 <= e.retry_after <= 65
    other = ClientKey(key="ck-secret-2", rpm=3)  # unnamed and not configured: its own budget, no key shown
    await (await lim.acquire(other))()
    await pools.close()


async def test_concurrency(backend: str, state_url: str | None) -> None:
    key = ClientKey(key="ck-secret-1", name="team-b", max_concurrency=2)
    lim, pools = await _limiter(backend, state_url, [key])
    r1, r2 = await lim.acquire(key), await lim.acquire(key)
    with pytest.raises(GatewayError) as err:
        await lim.acquire(key)
    assert "concurrency limit (2 requests at once)" in err.value.message and err.value.retry_after
    await r1()
    await r1()  # idempotent: must not free a second slot
    r3 = await lim.acquire(key)
    with pytest.raises(GatewayError):
        await lim.acquire(key)
    await r2()
    await r3()
    await pools.close()


async def test_unlimited_key_is_free(backend: str, state_url: str | None) -> None:
    key = ClientKey(key="k", name="free")
    lim, pools = await _limiter(backend, state_url, [key])
    releases = [await lim.acquire(key) for _ in range(50)]
    for r in releases:
        await r()
    await pools.close()


async def test_concurrency_shared_across_replicas(redis_url: str) -> None:
    key = ClientKey(key="ck", name="team-c", max_concurrency=2, rpm=100)
    (one, p1), (two, p2) = (
        await _limiter("redis", redis_url, [key]),
        await _limiter("redis", redis_url, [key]),
    )
    r1 = await one.acquire(key)
    r2 = await two.acquire(key)
    for lim in (one, two):
        with pytest.raises(GatewayError) as err:
            await lim.acquire(key)
        assert "concurrency" in err.value.message
    await r1()
    await (await two.acquire(key))()
    await r2()
    await p1.close()
    await p2.close()
