"""Concurrency caps under 200 concurrent acquirers, and how evenly strategies spread load."""

from __future__ import annotations

import asyncio
import collections
import random

import pytest

from smolgate.errors import GatewayError

from .util import acct, make_pools, prov


async def _hammer(pool, n: int, hold: tuple[float, float]) -> tuple[collections.Counter, collections.Counter]:  # type: ignore[no-untyped-def]
    live: collections.Counter[str] = collections.Counter()
    peak: collections.Counter[str] = collections.Counter()
    served: collections.Counter[str] = collections.Counter()

    async def client() -> None:
        lease = await pool.acquire()
        name = lease.account.name
        live[name] += 1
        peak[name] = max(peak[name], live[name])
        served[name] += 1
        await asyncio.sleep(random.uniform(*hold))
        live[name] -= 1
        lease.record(status=200)
        await lease.release()

    await asyncio.gather(*(client() for _ in range(n)))
    return peak, served


@pytest.mark.parametrize("strategy", ["round_robin", "least_in_flight", "weighted", "rate_limit_aware"])
async def test_max_concurrency_never_exceeded(backend: str, state_url: str | None, strategy: str) -> None:
    caps = {"a": 3, "b": 5, "c": 2}
    p = prov(
        "cap", [acct(n, max_concurrency=c) for n, c in caps.items()], strategy=strategy, queue_timeout=30
    )
    pools = await make_pools(backend, [p], state_url)
    try:
        peak, served = await _hammer(pools.get("cap"), 200, (0.001, 0.004))
    finally:
        await pools.close()
    assert sum(served.values()) == 200
    for name, cap in caps.items():
        assert peak[name] <= cap, (name, peak)
    assert sum(peak.values()) >= 8  # the caps were actually reached, so the check above meant something
    assert all(s.in_flight == 0 for s in pools.snapshot())


@pytest.mark.parametrize("strategy", ["round_robin", "weighted", "least_in_flight", "rate_limit_aware"])
async def test_equal_weights_spread_evenly(backend: str, state_url: str | None, strategy: str) -> None:
    p = prov("eq", [acct(n) for n in "abcd"], strategy=strategy)
    pools = await make_pools(backend, [p], state_url)
    try:
        _, served = await _hammer(pools.get("eq"), 400, (0.001, 0.003))
    finally:
        await pools.close()
    for name in "abcd":
        assert abs(served[name] - 100) <= 5, served


async def test_weights_three_to_one(backend: str, state_url: str | None) -> None:
    p = prov("w", [acct("big", weight=3), acct("small", weight=1)], strategy="weighted")
    pools = await make_pools(backend, [p], state_url)
    try:
        _, served = await _hammer(pools.get("w"), 400, (0.001, 0.003))
    finally:
        await pools.close()
    assert served["big"] + served["small"] == 400
    assert abs(served["big"] / served["small"] - 3.0) <= 0.15, served


async def test_zero_accounts_is_one_anonymous_account() -> None:
    p = prov("local", [])
    pools = await make_pools("memory", [p], None)
    lease = await pools.get("local").acquire()
    assert lease.account.api_key is None and lease.account.name
    lease.record(status=200)
    await lease.release()
    await lease.release()  # idempotent
    assert pools.snapshot()[0].in_flight == 0


async def test_excluded_accounts_are_skipped(backend: str, state_url: str | None) -> None:
    pools = await make_pools(backend, [prov("x", [acct("a"), acct("b")])], state_url)
    pool = pools.get("x")
    names = set()
    for _ in range(6):
        lease = await pool.acquire(exclude=frozenset({"a"}))
        names.add(lease.account.name)
        await lease.release()
    assert names == {"b"}
    with pytest.raises(GatewayError) as err:
        await pool.acquire(exclude=frozenset({"a", "b"}))
    assert err.value.kind.value == "rate_limited" and "excluded" in err.value.message
    await pools.close()


async def test_weight_zero_is_standby() -> None:
    p = prov("s", [acct("main", weight=1, max_concurrency=1), acct("spare", weight=0)], strategy="weighted")
    pools = await make_pools("memory", [p], None)
    pool = pools.get("s")
    names = []
    for _ in range(5):
        lease = await pool.acquire()
        names.append(lease.account.name)
        await lease.release()
    assert names == ["main"] * 5
    held = await pool.acquire()
    spare = await pool.acquire()  # main is at its cap: the standby takes the overflow
    assert (held.account.name, spare.account.name) == ("main", "spare")
    await held.release()
    await spare.release()
    await pools.close()


async def test_tpm_window_and_correction(backend: str, state_url: str | None) -> None:
    p = prov("t", [acct("a", tpm=100)], queue_timeout=0.1)
    pools = await make_pools(backend, [p], state_url)
    pool = pools.get("t")
    first = await pool.acquire(tokens=60)
    with pytest.raises(GatewayError) as err:
        await pool.acquire(tokens=60)  # 60 + 60 > 100 tokens per minute
    assert err.value.kind.value == "rate_limited" and err.value.retry_after > 1
    first.record(status=200, tokens=30)  # the answer used fewer tokens than estimated
    await first.release()
    await pools.drain()
    second = await pool.acquire(tokens=60)  # 30 + 60 fits
    await second.release()
    assert pools.snapshot()[0].tpm_used == 90
    await pools.close()


async def test_announced_token_budget_is_respected(backend: str, state_url: str | None) -> None:
    p = prov("t", [acct("a")], queue_timeout=0.1)
    pools = await make_pools(backend, [p], state_url)
    pool = pools.get("t")
    lease = await pool.acquire(tokens=10)
    lease.record(
        status=200,
        headers={
            "x-ratelimit-remaining-tokens": "0",
            "x-ratelimit-reset-tokens": "20s",
            "x-ratelimit-remaining-requests": "50",
            "x-ratelimit-reset-requests": "1s",
        },
    )
    await lease.release()
    await pools.drain()
    with pytest.raises(GatewayError) as err:
        await pool.acquire(tokens=10)
    assert 15 < err.value.retry_after <= 20  # waits for the token budget, although requests remain
    assert pools.snapshot()[0].remaining_tokens == 0 and pools.snapshot()[0].remaining_requests == 50
    await pools.close()
