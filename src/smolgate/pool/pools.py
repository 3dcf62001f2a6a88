"""`Pools`: every provider's `AccountPool`, one shared-state connection, and the status snapshot."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence

import msgspec

from ..config import ProviderBase
from ..errors import ErrorKind, GatewayError
from .accounts import AccountPool, PoolOptions
from .state_redis import SharedState


class AccountStatus(msgspec.Struct, kw_only=True):
    """What `smolgate accounts` and the admin API show. Names only — never a key."""

    provider: str
    account: str
    state: str  # healthy | cooling | open | half_open | disabled
    until: float | None  # epoch seconds the cooldown / open breaker ends
    reason: str | None
    in_flight: int
    recent_errors: list[str]
    rpm_used: int | None  # requests in the last minute (None: no rpm limit configured)
    tpm_used: int | None
    max_concurrency: int | None = None
    in_flight_all_replicas: int | None = None  # with shared state, as of the last `refresh()`
    remaining_requests: int | None = None  # as last announced by the upstream, minus what we sent since
    remaining_tokens: int | None = None


class Pools:
    def __init__(self, pools: dict[str, AccountPool], shared: SharedState | None) -> None:
        self._pools = pools
        self.shared = shared

    @classmethod
    async def create(
        cls,
        providers: Sequence[ProviderBase],
        state_url: str | None = None,
        *,
        options: PoolOptions | None = None,
    ) -> Pools:
        opts = options or PoolOptions()
        shared = None
        if state_url:
            shared = await SharedState(
                state_url,
                timeout=opts.redis_timeout,
                probe_interval=opts.probe_interval,
                slot_ttl=opts.slot_ttl,
            ).start()
        return cls({p.name: AccountPool(p, opts, shared) for p in providers}, shared)

    def get(self, provider: str) -> AccountPool:
        try:
            return self._pools[provider]
        except KeyError:
            raise GatewayError(ErrorKind.INTERNAL, f"no account pool for provider '{provider}'") from None

    def __iter__(self) -> Iterator[AccountPool]:
        return iter(self._pools.values())

    def snapshot(self) -> list[AccountStatus]:
        now = time.time()
        out = []
        for pool in self._pools.values():
            for a in pool.accounts:
                h = a.health
                h.gate(now)  # settle time-based transitions (an expired cooldown reads as healthy)
                state = h.state if a.cfg.enabled else "disabled"
                reason = h.reason if a.cfg.enabled else "disabled by the operator"
                fresh = a.rl.reset_requests is not None and a.rl.reset_requests > now
                fresh_t = a.rl.reset_tokens is not None and a.rl.reset_tokens > now
                out.append(
                    AccountStatus(
                        provider=pool.name,
                        account=a.name,
                        state=state,
                        until=h.until if state in ("cooling", "open") else None,
                        reason=reason if state != "healthy" else None,
                        in_flight=a.in_flight,
                        recent_errors=list(a.errors),
                        rpm_used=a.req.total(now) if a.req is not None else None,
                        tpm_used=a.tok.total(now) if a.tok is not None else None,
                        max_concurrency=a.cfg.max_concurrency,
                        in_flight_all_replicas=a.in_flight_all,
                        remaining_requests=max(0, a.est_req) if a.est_req is not None and fresh else None,
                        remaining_tokens=max(0, a.est_tok) if a.est_tok is not None and fresh_t else None,
                    )
                )
        return out

    async def refresh(self) -> None:
        """Pull what other replicas recorded (cooldowns, open breakers, disabled keys, combined in-flight)
        into this replica's view, so `snapshot()` shows the whole fleet. No-op without shared state."""
        if self.shared is None:
            return
        await self.shared.drain()  # our own outcomes first: a disable still queued is not a re-enable
        accts = [(pool, a) for pool in self._pools.values() for a in pool.accounts]
        now = time.time()
        res = await self.shared.read([pool.prefix(a) for pool, a in accts], now)
        if res is None:
            return
        for (_, a), (state, until, reason, fp, n) in zip(accts, res, strict=True):
            h = a.health
            if (state == "disabled" and fp == a.key_fp and h.state != "disabled") or (
                state in ("cooling", "open") and until > max(now, h.until)
            ):
                h.mirror(state, until, reason or None)
            elif h.state == "disabled" and state != "disabled":
                # An operator re-enabled it on another replica (its shared mark is gone): so here too.
                # (Should the key still be bad, the next attempt disables it again.)
                h.mirror("healthy", 0.0, None)
            a.in_flight_all = n

    async def drain(self) -> None:
        """Let fire-and-forget shared writes land (tests; graceful shutdown)."""
        if self.shared is not None:
            await self.shared.drain()

    async def close(self) -> None:
        if self.shared is not None:
            await self.shared.drain()
            await self.shared.close()
