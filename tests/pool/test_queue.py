"""The bounded FIFO wait queue in front of accounts that are all at their caps."""

from __future__ import annotations

import asyncio
import time

import pytest

from smolgate.errors import ErrorKind, GatewayError

from .util import acct, make_pools, prov


async def test_waiters_are_served_in_order(backend: str, state_url: str | None) -> None:
    pools = await make_pools(backend, [prov("q", [acct("a", max_concurrency=1)], queue_timeout=5)], state_url)
    pool = pools.get("q")
    first = await pool.acquire()
    order: list[int] = []

    async def waiter(i: int) -> None:
        lease = await pool.acquire()
        order.append(i)
        await asyncio.sleep(0.002)
        lease.record(status=200)
        await lease.release()

    tasks = []
    for i in range(8):
        tasks.append(asyncio.create_task(waiter(i)))
        await asyncio.sleep(0.005)  # each one queued before the next arrives
    await first.release()
    await asyncio.gather(*tasks)
    assert order == list(range(8))
    await pools.close()


async def test_newcomer_does_not_jump_the_queue() -> None:
    pools = await make_pools("memory", [prov("q", [acct("a", max_concurrency=1)])], None)
    pool = pools.get("q")
    held = await pool.acquire()
    queued = asyncio.create_task(pool.acquire())
    await asyncio.sleep(0)
    await held.release()  # the slot goes to the queued waiter, not to whoever asks next
    newcomer = asyncio.create_task(pool.acquire())
    lease = await queued
    await asyncio.sleep(0.01)
    assert not newcomer.done()
    await lease.release()
    await (await newcomer).release()
    await pools.close()


async def test_queue_timeout_gives_429_with_retry_after(backend: str, state_url: str | None) -> None:
    pools = await make_pools(
        backend, [prov("q", [acct("a", max_concurrency=1)], queue_timeout=0.2)], state_url
    )
    pool = pools.get("q")
    held = await pool.acquire()
    t = time.monotonic()
    with pytest.raises(GatewayError) as err:
        await pool.acquire()
    assert 0.19 <= time.monotonic() - t < 0.5
    assert err.value.kind is ErrorKind.RATE_LIMITED and err.value.retry_after and err.value.retry_after > 0
    assert "busy" in err.value.message and "'q'" in err.value.message
    t = time.monotonic()  # the caller's deadline wins when it is sooner
    with pytest.raises(GatewayError):
        await pool.acquire(deadline=time.monotonic() + 0.05)
    assert time.monotonic() - t < 0.15
    await held.release()
    (await pool.acquire()).record(status=200)  # the queue is left clean
    await pools.close()


async def test_queue_length_is_bounded() -> None:
    pools = await make_pools("memory", [prov("q", [acct("a", max_concurrency=1)])], None, max_queue=3)
    pool = pools.get("q")
    held = await pool.acquire()
    waiting = [asyncio.create_task(pool.acquire()) for _ in range(3)]
    await asyncio.sleep(0)
    t = time.monotonic()
    with pytest.raises(GatewayError) as err:
        await pool.acquire()
    assert time.monotonic() - t < 0.05 and "queue is full" in err.value.message
    await held.release()
    for w in waiting:
        await (await w).release()
    await pools.close()


async def test_cancelled_waiter_leaves_no_trace() -> None:
    pools = await make_pools("memory", [prov("q", [acct("a", max_concurrency=1)])], None)
    pool = pools.get("q")
    held = await pool.acquire()
    gone = asyncio.create_task(pool.acquire())
    await asyncio.sleep(0)
    gone.cancel()
    await held.release()  # the hand-over may hit the cancelled waiter: the slot must not leak
    await asyncio.sleep(0.01)
    lease = await asyncio.wait_for(pool.acquire(), 1)
    assert pools.snapshot()[0].in_flight == 1
    await lease.release()
    await pools.close()


async def test_rpm_limit_waits_then_429s(backend: str, state_url: str | None) -> None:
    pools = await make_pools(backend, [prov("q", [acct("a", rpm=2)], queue_timeout=0.1)], state_url)
    pool = pools.get("q")
    for _ in range(2):
        await (await pool.acquire()).release()
    with pytest.raises(GatewayError) as err:
        await pool.acquire()
    assert 5 <= err.value.retry_after <= 65  # the window frees within a minute, not in 1 s
    assert pools.snapshot()[0].rpm_used == 2
    await pools.close()


async def test_cooling_account_returns_to_waiters() -> None:
    """All accounts busy or cooling: the waiter is served when the cooldown ends, not only on a release."""
    pools = await make_pools("memory", [prov("q", [acct("a", max_concurrency=1), acct("b")])], None)
    pool = pools.get("q")
    lease = await pool.acquire(exclude=frozenset({"a"}))
    lease.record(status=429, headers={"retry-after-ms": "150"})
    await lease.release()
    held = await pool.acquire()
    assert held.account.name == "a"
    t = time.monotonic()
    got = await pool.acquire()
    assert got.account.name == "b" and 0.1 <= time.monotonic() - t < 0.4
    await got.release()
    await held.release()
    await pools.close()
