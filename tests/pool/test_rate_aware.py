"""The rate-limit-aware strategy steers away from an account whose headers count down — before it 429s."""

from __future__ import annotations

import asyncio
import math
import time

import pytest

from .util import acct, make_pools, prov


class Budget:
    """An upstream's per-key request budget that refills every `window` seconds, announced in headers the
    way OpenAI does it (remaining + a Go-style reset duration, rounded *up* like a careful server)."""

    def __init__(self, limit: int, window: float) -> None:
        self.limit, self.window = limit, window
        self.start, self.used, self.throttled, self.served = time.time(), 0, 0, 0

    def call(self) -> tuple[int, dict[str, str]]:
        now = time.time()
        if now - self.start >= self.window:
            self.start, self.used = now, 0
        reset = math.ceil((self.window - (now - self.start)) * 1000)
        h = {"x-ratelimit-limit-requests": str(self.limit), "x-ratelimit-reset-requests": f"{reset}ms"}
        if self.used >= self.limit:
            self.throttled += 1
            return 429, {**h, "x-ratelimit-remaining-requests": "0"}
        self.used += 1
        self.served += 1
        return 200, {**h, "x-ratelimit-remaining-requests": str(self.limit - self.used)}


async def _drive(
    pool,
    budgets: dict[str, Budget],
    n: int,
    concurrency: int,  # type: ignore[no-untyped-def]
    headers: bool = True,
) -> None:
    sem = asyncio.Semaphore(concurrency)

    async def one() -> None:
        async with sem:
            lease = await pool.acquire()
            await asyncio.sleep(0.001)
            code, h = budgets[lease.account.name].call()
            lease.record(status=code, headers=h if headers else None)
            await lease.release()

    await asyncio.gather(*(one() for _ in range(n)))


@pytest.mark.parametrize(
    "strategy,headers", [("rate_limit_aware", True), ("round_robin", True), ("round_robin", False)]
)
async def test_counting_down_account_is_avoided(
    backend: str, state_url: str | None, strategy: str, headers: bool
) -> None:
    budgets = {"tight": Budget(15, 30.0), "roomy": Budget(100_000, 30.0)}
    p = prov("rl", [acct("tight"), acct("roomy")], strategy=strategy)
    pools = await make_pools(backend, [p], state_url, backoff_base=0.05)
    await _drive(pools.get("rl"), budgets, 200, 8, headers)
    await pools.close()
    tight = budgets["tight"]
    assert budgets["roomy"].throttled == 0
    if not headers:  # the control: without reading the headers, the tight account is run into 429s
        assert tight.throttled > 0
    elif strategy == "round_robin":  # any strategy stops at an announced zero instead of sending a sure 429
        assert tight.throttled == 0 and tight.served == 15
    else:  # rate-limit-aware: used while nothing was known, then left alone with budget to spare
        assert tight.throttled == 0 and 1 <= tight.served <= 10


async def test_single_account_waits_for_the_announced_reset(backend: str, state_url: str | None) -> None:
    budget = Budget(10, 0.3)
    p = prov("solo", [acct("only")], strategy="rate_limit_aware")
    pools = await make_pools(backend, [p], state_url)
    t = time.time()
    await _drive(pools.get("solo"), {"only": budget}, 40, 4)
    await pools.close()
    assert budget.throttled == 0 and budget.served == 40
    assert time.time() - t >= 0.85  # 40 requests at 10 per 0.3 s cannot finish faster without 429s
