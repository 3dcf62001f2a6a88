"""What a virtual key has spent in its budget period (UTC day, UTC month, or ever), across replicas.

With shared state (`state: redis://…`) the spend is one Redis counter per key and period
(`smolgate:spend:<key id>:<d20261207|m202612|total>`), INCRBYFLOAT-ed by every replica when a request's cost is
known and read before each request of a budgeted key. A missing counter (first use, a flushed Redis) is seeded
from the store's ledger, once (SET NX), so history counts.

Without Redis — or while it is unreachable — the spend is the store's `key_spend` (rollups) plus this replica's
*pending* spend: costs of finished requests the ledger has not written yet (the ledger tells us each batch it
wrote, `written`). That is exact for this replica; other replicas' spend is seen once their ledger flushed it
(≤ `ledger.flush_interval`, 1 s) and our cached read of the store expires (≤ 1 s).

Either way a request is admitted while spend < budget, and its cost is known only at its end, so the requests
in flight when the budget runs out may overshoot it by their own cost.
"""

from __future__ import annotations

import time

from ..pool.state_redis import SharedState
from ..store import Store, UsageRow
from ..store.records import KeyRow, Period
from ..vkeys import period_bounds, period_tag

_TTL: dict[Period, int | None] = {"day": 3 * 86400, "month": 40 * 86400, "total": None}
STORE_CACHE = 1.0  # seconds a key's spend read from the store is reused (unless our own rows land)


class Budgets:
    def __init__(self, store: Store, shared: SharedState | None) -> None:
        self.store = store
        self.shared = shared
        self._read: dict[tuple[str, float], tuple[float, float]] = {}  # (id, period start) → (when, $)
        self._pending: dict[tuple[str, float], float] = {}  # (id, period start) → $ not in the store yet
        self._periods: dict[str, Period] = {}  # id → its budget period, for `written`
        self._writes = 0  # batches written so far: a read that overlapped one is not cached

    async def spent(self, row: KeyRow, now: float) -> float:
        sh = self.shared
        if sh is not None and sh.up:
            key = self._redis_key(row, now)
            up, value = await sh.get_float(key)
            if up and value is None:  # first use this period (or Redis lost it): start from the ledger
                await sh.seed_float(key, await self._stored(row, now), _TTL[row.period])
                up, value = await sh.get_float(key)
            if up and value is not None:
                return value
        start, _ = period_bounds(row.period, now)
        return await self._stored(row, now) + self._pending.get((row.id, start), 0.0)

    def add(self, row: KeyRow, cost: float, ts: float) -> None:
        """A finished request's cost (`ts`: its arrival, as in its ledger row). Must not block: the Redis
        write runs in the background."""
        start, _ = period_bounds(row.period, ts)
        self._pending[(row.id, start)] = self._pending.get((row.id, start), 0.0) + cost
        self._periods[row.id] = row.period
        sh = self.shared
        if sh is not None and sh.up:
            sh.spawn(
                sh.add_float(self._redis_key(row, ts), cost, _TTL[row.period])
            )  # its period, as the ledger

    def written(self, rows: list[UsageRow]) -> None:
        """The ledger wrote these rows: their cost is in the store now, no longer pending."""
        for r in rows:
            period = self._periods.get(r.key_id) if r.key_id is not None else None
            if period is None or r.key_id is None or not r.cost_usd:
                continue
            slot = (r.key_id, period_bounds(period, r.ts)[0])
            left = self._pending.get(slot, 0.0) - r.cost_usd
            if left > 1e-12:
                self._pending[slot] = left
            else:
                self._pending.pop(slot, None)
            self._read.pop(slot, None)  # the next check reads the store afresh
        self._writes += 1

    async def _stored(self, row: KeyRow, now: float) -> float:
        start, _ = period_bounds(row.period, now)
        mono = time.monotonic()
        hit = self._read.get((row.id, start))
        if hit is not None and mono - hit[0] < STORE_CACHE:
            return hit[1]
        writes = self._writes
        value = await self.store.key_spend(row.id, start)
        if len(self._read) > 10_000:  # bounded: old periods and forgotten keys go
            self._read.clear()
        if writes == self._writes:
            self._read[(row.id, start)] = (mono, value)
        return value

    @staticmethod
    def _redis_key(row: KeyRow, now: float) -> str:
        return f"smolgate:spend:{row.id}:{period_tag(row.period, now)}"
