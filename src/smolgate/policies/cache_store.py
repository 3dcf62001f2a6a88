"""Where the response cache keeps its entries: bytes by key with a TTL each.

`MemoryCacheStore`: one process's LRU, bounded by entry count and by bytes (keys included); an entry larger
than an eighth of `max_bytes` is never kept (one huge answer must not evict everything). `RedisCacheStore`:
shared by replicas (`state: redis://…`); Redis's own `maxmemory` bounds it, each entry expires by itself, and
a Redis that is down makes lookups miss for a few seconds instead of failing requests.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from typing import Any, Protocol

log = logging.getLogger("smolgate.cache")

DOWN_FOR = 5.0  # seconds a failed Redis is left alone (lookups miss, answers are not stored)


class CacheStore(Protocol):
    max_value: int

    async def get(self, key: str) -> bytes | None: ...

    async def put(self, key: str, value: bytes, ttl: float) -> None: ...

    async def close(self) -> None: ...


class MemoryCacheStore:
    def __init__(self, max_entries: int, max_bytes: int) -> None:
        self.max_entries, self.max_bytes = max_entries, max_bytes
        self.max_value = max_bytes // 8
        self._mem: OrderedDict[str, tuple[float, bytes]] = OrderedDict()
        self.bytes = 0

    def __len__(self) -> int:
        return len(self._mem)

    async def get(self, key: str) -> bytes | None:
        hit = self._mem.get(key)
        if hit is None:
            return None
        if hit[0] <= time.monotonic():
            self._drop(key)
            return None
        self._mem.move_to_end(key)
        return hit[1]

    async def put(self, key: str, value: bytes, ttl: float) -> None:
        if len(value) > self.max_value or ttl <= 0:
            return
        self._drop(key)
        self._mem[key] = (time.monotonic() + ttl, value)
        self.bytes += len(key) + len(value)
        while len(self._mem) > self.max_entries or self.bytes > self.max_bytes:
            k, (_, v) = self._mem.popitem(last=False)
            self.bytes -= len(k) + len(v)

    def _drop(self, key: str) -> None:
        old = self._mem.pop(key, None)
        if old is not None:
            self.bytes -= len(key) + len(old[1])

    async def close(self) -> None:
        self._mem.clear()
        self.bytes = 0


class RedisCacheStore:
    def __init__(self, url: str, max_value: int, timeout: float = 0.5) -> None:
        from redis.asyncio import Redis
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff

        self.max_value = max_value
        self._timeout = timeout
        self._down_until = 0.0
        self._redis: Any = Redis.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=timeout, retry=Retry(NoBackoff(), 0)
        )

    async def get(self, key: str) -> bytes | None:
        value = await self._call(self._redis.get(key))
        return value if isinstance(value, bytes) else None

    async def put(self, key: str, value: bytes, ttl: float) -> None:
        if len(value) <= self.max_value and ttl > 0:
            await self._call(self._redis.set(key, value, px=max(1, int(ttl * 1000))))

    async def _call(self, op: Any) -> Any:
        """A Redis call that never fails the request: an error is a miss (and a skipped write) for a while."""
        if time.monotonic() < self._down_until:
            op.close()  # the coroutine was never awaited
            return None
        try:
            return await asyncio.wait_for(op, self._timeout * 4)
        except Exception as exc:  # any Redis failure degrades to "not cached", never to the client
            log.warning(
                "response cache: redis unreachable (%s); not caching for %g s", type(exc).__name__, DOWN_FOR
            )
            self._down_until = time.monotonic() + DOWN_FOR
            return None

    async def close(self) -> None:
        await self._redis.aclose()
