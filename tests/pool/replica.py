"""A stand-alone smolgate pool replica for the cross-process tests (run as a script, not collected).

    python replica.py hammer URL CAP N        → N concurrent acquirers against one account with
                                                 max_concurrency=CAP; prints JSON {served, peak}
    python replica.py hold-and-crash URL CAP  → takes CAP slots, then dies without releasing them

"Live" holders are counted in Redis with INCR/DECR (atomic, across both processes): the test's own
observation of combined concurrency, independent of the pool's bookkeeping.
"""

from __future__ import annotations

import asyncio
import os
import random
import sys

import orjson
import redis.asyncio as aredis

from smolgate.config import AccountConfig, ProviderConfig
from smolgate.pool import PoolOptions, Pools


def provider(cap: int) -> ProviderConfig:
    return ProviderConfig(
        name="shared",
        protocol="openai",
        base_url="http://127.0.0.1:1/v1",
        queue_timeout=30,
        accounts=[AccountConfig(name="only", api_key="sk-x", max_concurrency=cap)],
    )


async def hammer(url: str, cap: int, n: int) -> None:
    r = aredis.Redis.from_url(url)
    pools = await Pools.create([provider(cap)], url, options=PoolOptions(slot_ttl=5))
    pool = pools.get("shared")
    await r.incr("test:ready")
    while int(await r.get("test:ready") or 0) < 2:  # start together with the other replica
        await asyncio.sleep(0.005)
    peak = 0

    async def client() -> None:
        nonlocal peak
        lease = await pool.acquire()
        live = await r.incr("test:live")
        peak = max(peak, live)
        await asyncio.sleep(random.uniform(0.002, 0.006))
        await r.decr("test:live")
        lease.record(status=200)
        await lease.release()

    await asyncio.gather(*(client() for _ in range(n)))
    await pools.close()
    await r.aclose()
    print(orjson.dumps({"served": n, "peak": peak}).decode())


async def hold_and_crash(url: str, cap: int) -> None:
    pools = await Pools.create([provider(cap)], url, options=PoolOptions(slot_ttl=1.0))
    for _ in range(cap):
        await pools.get("shared").acquire()
    print("held", flush=True)
    os._exit(0)  # no release, no close: like a replica that was OOM-killed


if __name__ == "__main__":
    cmd, url, cap = sys.argv[1], sys.argv[2], int(sys.argv[3])
    if cmd == "hammer":
        asyncio.run(hammer(url, cap, int(sys.argv[4])))
    else:
        asyncio.run(hold_and_crash(url, cap))
