"""What a virtual key has spent in its budget period (UTC day, UTC month, or ever), across replicas.

With shared state (`state: redis://…`) the spend is one Redis counter per key and period
(`smolgate:spend:<key id>:<d20261207|m202612|total>`), INCRBYFLOAT-ed by every replica when a request's cost is
known and read before each request of a budgeted key. A missing counter (first use, a flushed Redis) is seeded
from the store's ledger, once (SET NX), so history counts.

Without Redis — or while it is unreachable — the spend is the store's `key_spend` (rollups, read at most once a
second per key) plus what this replica spent recently: the ledger flushes every `flush_interval` (≤ 1 s), so the
recent spend of the last `flush_interval` + 1 s is added on top. That errs on the side of refusing (a request
finished in that window may be counted twice); other replicas' spend is seen once their ledger flushed.

Either way a request is admitted while spend < budget, and its cost is known only at its end, so the requests
in flight when the budget runs out may overshoot it by their own cost.
"""

from __future__ import annotations

import collections
import time

from ..pool.state_redis import SharedState
from ..store import Store
from ..store.records import KeyRow, Period
from ..vkeys import period_bounds, period_tag

_TTL: dict[Period, int | None] = {"day": 3 * 86400, "month": 40 * 86400, "total": None}
STORE_CACHE = 1.0  # seconds a key's spend read from the store is reused
LOCAL_KEEP = 30.0  # seconds this replica remembers its own recent spend (well past any flush)


class Budgets:
    def __init__(self, store: Store, shared: SharedState | None, flush_interval: float = 1.0) -> None:
        self.store = store
        self.shared = shared
        self.flush_interval = flush_interval
        self._read: dict[tuple[str, float], tuple[float, float, float]] = {}  # (id, start) → (mono, wall, $)
        self._recent: dict[str, collections.deque[tuple[float, float]]] = {}  # id → (when, $), oldest first

    async def spent(self, row: KeyRow, now: float) -> float:
        sh = self.shared
        if sh is not None and sh.up:
            key = self._redis_key(row, now)
            up, value = await sh.get_float(key)
            if up and value is None:  # first use this period (or Redis lost it): start from the ledger
                await sh.seed_float(key, (await self._stored(row, now))[0], _TTL[row.period])
                up, value = await sh.get_float(key)
            if up and value is not None:
                return value
        base, fetched = await self._stored(row, now)
        start, _ = period_bounds(row.period, now)
        since = max(start, fetched - self.flush_interval - 1.0)
        return base + sum(c for t, c in self._recent.get(row.id, ()) if t >= since)

    def add(self, row: KeyRow, cost: float) -> None:
        """A finished request's cost. Must not block: the Redis write runs in the background."""
        now = time.time()
        recent = self._recent.setdefault(row.id, collections.deque())
        recent.append((now, cost))
        while recent and recent[0][0] < now - LOCAL_KEEP:
            recent.popleft()
        sh = self.shared
        if sh is not None and sh.up:
            sh.spawn(sh.add_float(self._redis_key(row, now), cost, _TTL[row.period]))

    async def _stored(self, row: KeyRow, now: float) -> tuple[float, float]:
        """(spend in the store this period, when it was read)."""
        start, _ = period_bounds(row.period, now)
        mono = time.monotonic()
        hit = self._read.get((row.id, start))
        if hit is not None and mono - hit[0] < STORE_CACHE:
            return hit[2], hit[1]
        value = await self.store.key_spend(row.id, start)
        if len(self._read) > 10_000:  # bounded: old periods and forgotten keys go
            self._read.clear()
        self._read[(row.id, start)] = (mono, now, value)
        return value, now

    @staticmethod
    def _redis_key(row: KeyRow, now: float) -> str:
        return f"smolgate:spend:{row.id}:{period_tag(row.period, now)}"
