"""Virtual keys on the request path: who a presented `sg-…` key is, and whether it may ask now.

A presented key is hashed (HMAC with the pepper, vkeys.py) and looked up by hash in the store, through a small
bounded cache of positive and negative answers kept `ttl` seconds (3 s): a key revoked, rotated or created by
another process (the CLI, another replica) takes effect within `ttl` seconds; in this process at once.

The gateway is open (no key needed) only while there are neither config-file keys nor virtual keys. Whether
the store holds any key is read at start and, while none is known, again at most every `ttl` seconds; once a
key exists the gateway stays closed for the life of the process (revoking every key does not reopen it).

Then, per request of a virtual key: 401 if unknown, revoked or expired; the protocol's quota error once its
budget is spent (vkeys_budget.py); 429 over its rpm / tpm / concurrency (the shared `ClientLimiter`); and,
once the body is decoded, 403 for a model outside its `models`. As an `Observer`, it counts each finished
request's tokens (tpm) and cost (budget).
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

from ..errors import ErrorKind, GatewayError, shown
from ..pool import ClientLimiter
from ..store import KeyRow, Store
from ..telemetry import RequestRecord
from ..vkeys import hash_secret, period_bounds
from .vkeys_budget import Budgets

if TYPE_CHECKING:
    from .asgi import HttpRequest
    from .throttle import AuthThrottle

log = logging.getLogger("smolgate.keys")
Cost = Callable[[RequestRecord], float]
T = TypeVar("T")
_PERIOD_WORD = {"day": "daily", "month": "monthly", "total": "total"}


class KeyService:
    def __init__(
        self,
        store: Store,
        pepper: Callable[[], bytes],
        limiter: ClientLimiter,
        budgets: Budgets,
        cost: Cost,
        *,
        ttl: float = 3.0,
        capacity: int = 10_000,
    ) -> None:
        self.store = store
        self.limiter = limiter
        self.budgets = budgets
        self.cost = cost  # USD of a finished request (the ledger's pricing)
        self.ttl = ttl
        self._load_pepper = pepper  # read on first use: a gateway without virtual keys never needs it
        self._pepper: bytes | None = None
        self._capacity = capacity
        self._cache: OrderedDict[str, tuple[float, KeyRow | None]] = OrderedDict()  # hash → (until, row)
        self._known: dict[str, KeyRow] = {}  # id → the row last seen authenticating (for `finished`)
        self._any = False
        self._any_checked = -1e18
        self._any_lock = asyncio.Lock()

    # ---------------------------------------------------------------- who is asking
    async def any_keys(self) -> bool:
        """Whether the store holds any virtual key (read at most every `ttl` s until one exists)."""
        if self._any:
            return True
        if time.monotonic() - self._any_checked < self.ttl:
            return False
        async with self._any_lock:
            if not self._any and time.monotonic() - self._any_checked >= self.ttl:
                self._any = bool(await self._guard(self.store.keys(include_revoked=True)))
                self._any_checked = time.monotonic()
        return self._any

    async def authenticate(self, secret: str, addr: str, throttle: AuthThrottle) -> KeyRow:
        """The key's row; 401 if unknown, revoked or expired (a failure counts toward `throttle`)."""
        row = await self._lookup(secret)
        now = time.time()
        reason = None
        if row is None:
            reason = "invalid API key"
        elif row.revoked is not None:
            reason = "this API key has been revoked"
        elif row.expires is not None and row.expires <= now:
            reason = "this API key has expired"
        if reason is not None or row is None:
            throttle.failed(addr)
            raise GatewayError(ErrorKind.AUTH, reason or "invalid API key")
        throttle.succeeded(addr)
        self._known.pop(row.id, None)
        self._known[row.id] = row  # most recently seen last; the least recently seen goes past capacity
        if len(self._known) > self._capacity:
            self._known.pop(next(iter(self._known)))
        return row

    def pepper(self) -> bytes:
        """The server pepper (vkeys.py); 503 if it cannot be read or created."""
        if self._pepper is None:
            try:
                self._pepper = self._load_pepper()
            except (OSError, ValueError) as exc:
                log.error("virtual keys unavailable: cannot load the key pepper: %s", exc)
                raise GatewayError(
                    ErrorKind.OVERLOADED, "virtual keys are unavailable (server configuration)"
                ) from None
        return self._pepper

    async def _lookup(self, secret: str) -> KeyRow | None:
        digest = hash_secret(self.pepper(), secret)
        now = time.monotonic()
        hit = self._cache.get(digest)
        if hit is not None and hit[0] > now:
            return hit[1]
        row = await self._guard(self.store.key_by_hash(digest))
        # The store matched on an index; compare once more in constant time before trusting the row.
        if row is not None and not hmac.compare_digest(row.hash, digest):
            row = None
        self._cache[digest] = (now + self.ttl, row)
        self._cache.move_to_end(digest)
        while len(self._cache) > self._capacity:
            self._cache.popitem(last=False)
        return row

    async def _guard(self, query: Awaitable[T]) -> T:
        try:
            return await query
        except Exception as exc:  # the store is down: refuse as unavailable, never as open
            log.warning("key store unavailable: %s", type(exc).__name__)
            raise GatewayError(
                ErrorKind.OVERLOADED, "the key store is unavailable; retry shortly", retry_after=1
            ) from None

    # ---------------------------------------------------------------- may it ask now
    async def admit(self, row: KeyRow) -> Callable[[], Awaitable[None]]:
        """Budget, then rate and concurrency limits; returns the release to call when the request ends."""
        if row.budget_usd is not None:
            now = time.time()
            spent = await self._guard(self.budgets.spent(row, now))
            if spent >= row.budget_usd:
                _, end = period_bounds(row.period, now)
                raise GatewayError(
                    ErrorKind.QUOTA,
                    f"key {row.id} has spent its {_PERIOD_WORD[row.period]} budget "
                    f"(${row.budget_usd:.2f})" + (" until the period ends (UTC)" if end else ""),
                    retry_after=round(end - now) if end else None,
                )
        return await self.limiter.acquire_for(row.id, row.rpm, row.max_concurrency, row.tpm)

    # ---------------------------------------------------------------- changes made in this process
    def added(self) -> None:
        self._any = True

    def forget(self, row: KeyRow) -> None:
        """A key revoked or rotated here: its old secret stops working now, not in `ttl` seconds. (Its row
        stays known: requests already in flight still count their tokens and cost when they finish.)"""
        self._cache.pop(row.hash, None)

    # ---------------------------------------------------------------- Observer: count what it used
    def finished(self, rec: RequestRecord) -> None:
        kid = rec.key_id
        row = self._known.get(kid) if kid is not None else None
        if row is None:
            return
        if row.tpm is not None and rec.usage is not None:
            self.limiter.add_tokens(row.id, rec.usage.input_tokens + rec.usage.output_tokens)
        if row.budget_usd is not None and rec.generation:
            cost = self.cost(rec)
            if cost > 0:
                self.budgets.add(row, cost, rec.ts)


def allow_model(req: HttpRequest, model: str) -> None:
    """403 when the request's virtual key may not use `model` (checked right after the body is decoded)."""
    allowed = req.models
    if allowed is not None and model not in allowed:
        raise GatewayError(
            ErrorKind.PERMISSION,
            f"this API key may not use the model '{shown(model, '(the requested name)')}'",
        )


def owner_key(req: HttpRequest) -> str | None:
    """What owns the state kept across turns (stored responses, signatures): a virtual key's id — so it
    survives a rotation of the key's secret — else the key presented (hashed by the callers)."""
    rec = req.record
    if rec is not None and rec.key_id is not None and rec.key_id.startswith("vk_"):
        return rec.key_id
    return req.key
