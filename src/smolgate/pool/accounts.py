"""One provider's accounts: pick an account, hold a slot while the attempt runs, learn from the outcome.

Hot path (in-process state): `acquire` is synchronous work plus, only if every account is at its cap, an await
on a FIFO queue; `release` hands the freed slot straight to the head waiter, so a newcomer can never jump the
queue. No lock is needed (and none is held across an await) because all bookkeeping happens between awaits on
one event loop. With shared state, each pick is confirmed by one Lua call in Redis (see state_redis.py).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass

from ..config import AccountConfig, ProviderBase
from ..errors import ErrorKind, GatewayError
from . import health as H
from . import outcomes, strategies
from .changes import RunTimeChanges, account_state
from .state_memory import INF, AccountState
from .state_redis import SharedState

log = logging.getLogger("smolgate.pool")


@dataclass(slots=True)
class PoolOptions:
    max_queue: int = 1024  # waiters per provider; beyond this, 429 at once (no unbounded buffers)
    backoff_base: float = 1.0  # 429 without a reset hint: 1 s, 2 s, 4 s … (with jitter)
    backoff_cap: float = 60.0
    max_cooldown: float = 3600.0  # never believe a Retry-After longer than this
    slot_ttl: float = 30.0  # shared in-flight slot lease; renewed while held
    probe_interval: float = 1.0  # how often to look for a lost Redis
    poll_interval: float = 0.02  # shared mode: re-check capacity freed by other replicas while waiting
    redis_timeout: float = 0.5


class _Waiter:
    __slots__ = ("exclude", "fut", "tokens")

    def __init__(self, fut: asyncio.Future[Lease], tokens: int, exclude: frozenset[str]) -> None:
        self.fut, self.tokens, self.exclude = fut, tokens, exclude


class Lease:
    """One attempt's hold on one account. `record` the outcome, then `release` (idempotent)."""

    __slots__ = ("_acct", "_ok", "_pool", "_probe", "_released", "_slot", "_tokens", "account")

    def __init__(self, pool: AccountPool, acct: AccountState, tokens: int, probe: bool, slot: str | None):
        self.account: AccountConfig = acct.cfg
        self._pool, self._acct, self._tokens, self._probe, self._slot = pool, acct, tokens, probe, slot
        self._released = False
        # A success takes effect at release, so an attempt recorded "200" when its stream opened and then
        # recorded as failed mid-way counts as the failure it was (the breaker must see it).
        self._ok: H.Outcome | None = None

    def record(
        self,
        *,
        status: int | None = None,
        headers: Mapping[str, str] | None = None,
        error: ErrorKind | None = None,
        tokens: int = 0,
    ) -> None:
        self._pool._record(self, status, headers, error, tokens)

    async def release(self) -> None:
        if self._released:
            return
        self._released = True
        await self._pool._release(self)

    def __repr__(self) -> str:
        return f"Lease({self._pool.name}/{self._acct.name})"


class AccountPool(RunTimeChanges):
    def __init__(
        self, provider: ProviderBase, options: PoolOptions | None = None, shared: SharedState | None = None
    ) -> None:
        self.provider = provider
        self.name = provider.name
        self.opts = options or PoolOptions()
        self.shared = shared
        cfgs = provider.accounts or [AccountConfig(name=f"{provider.name}#anon")]  # keyless local server
        self.accounts = [account_state(c, i, f"{provider.name}#{i}") for i, c in enumerate(cfgs)]
        self._pick = strategies.make(provider.strategy, len(self.accounts))
        self._waiters: collections.deque[_Waiter] = collections.deque()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = INF
        self._draining = False
        self._releasing: set[asyncio.Task[None]] = set()

    @property
    def waiting(self) -> int:
        """Requests queued for a free account (metrics' queue depth)."""
        return len(self._waiters)

    # ---- picking -------------------------------------------------------------------------------------
    def _choose(
        self, tokens: int, exclude: frozenset[str], now: float, busy: set[str] | None = None
    ) -> tuple[AccountState | None, bool, float]:
        """(account, is_probe, hint). No account + hint: all candidates are at their caps, room may return at
        `hint` (epoch; INF = on a release). Raises if no account is usable at all."""
        cands: list[AccountState] = []
        probes: set[int] = set()
        hint, recovery, usable = INF, INF, False
        for a in self.accounts:
            if a.name in exclude or not a.cfg.enabled:
                continue
            g = a.health.gate(now)
            if g is H.Gate.BLOCKED:
                r = a.health.recovery_at()
                if r is not None:
                    recovery = min(recovery, r)
                continue
            usable = True
            if busy and a.name in busy:
                continue
            cap = a.capped(now, tokens)
            if cap is not None:
                hint = min(hint, cap)
                continue
            if g is H.Gate.PROBE:
                probes.add(a.index)
            cands.append(a)
        if cands:
            a = cands[0] if len(cands) == 1 else self._pick(cands, now)
            return a, a.index in probes, hint
        if not usable:
            raise self._unavailable(exclude, now, recovery)
        return None, False, min(hint, recovery)  # a cooling account may come back before a slot frees

    def _grant(self, a: AccountState, tokens: int, probe: bool, now: float, slot: str | None) -> Lease:
        a.take(now, tokens)
        if probe:
            a.health.probing = True
        return Lease(self, a, tokens, probe, slot)

    def _try_local(self, tokens: int, exclude: frozenset[str]) -> Lease | float:
        now = time.time()
        a, probe, hint = self._choose(tokens, exclude, now)
        return hint if a is None else self._grant(a, tokens, probe, now, None)

    async def _try(self, tokens: int, exclude: frozenset[str]) -> Lease | float:
        sh = self.shared
        if sh is None or not sh.up:
            return self._try_local(tokens, exclude)
        busy: set[str] = set()
        hint = INF
        while True:
            now = time.time()
            a, probe, h = self._choose(tokens, exclude, now, busy)
            hint = min(hint, h)
            if a is None:
                return min(hint, now + self.opts.poll_interval)  # other replicas release without telling us
            slot = sh.new_slot()
            c = a.cfg
            res = await sh.claim(
                self.prefix(a),
                now,
                slot,
                max_concurrency=c.max_concurrency,
                rpm=c.rpm,
                tpm=c.tpm,
                tokens=tokens,
                fp=a.key_fp,
            )
            if res is None:  # Redis just went away: the local decision stands
                return self._try_local(tokens, exclude)
            ok, code, until, reason = res
            now = time.time()
            if ok and a.capped(now, tokens) is not None:
                # Another task of ours took the last local slot while we were asking Redis: give it back.
                await sh.release(slot)
                ok, code, until = False, "busy", 0.0
            if ok:
                return self._grant(a, tokens, probe or code == "probe", now, slot)
            if code in (H.COOLING, H.OPEN, H.HALF_OPEN, H.DISABLED):
                a.health.mirror(code, until, reason or None)  # another replica saw it fail first
            else:  # busy / rpm / tpm / exhausted across replicas
                busy.add(a.name)
                if until:
                    hint = min(hint, until)

    def _unavailable(self, exclude: frozenset[str], now: float, recovery: float) -> GatewayError:
        states: dict[str, list[str]] = {}
        for a in self.accounts:
            st = "excluded" if a.name in exclude else a.health.state if a.cfg.enabled else "disabled"
            states.setdefault(st, []).append(a.name)
        detail = "; ".join(f"{k}: {', '.join(v)}" for k, v in states.items())
        retry = max(0.0, recovery - now) if recovery < INF else None
        if retry is None and H.HALF_OPEN in states:
            retry = 1.0  # a probe is testing the account right now
        message = f"no usable account for provider '{self.name}' ({detail})"
        # The kind says why, so clients react rightly: only a cooldown after the upstream's own 429 is a rate
        # limit; a tripped breaker is an upstream that is down (503, retry later); accounts disabled because
        # the upstream rejected their keys are the gateway's upstream failure (502), never a 429 that clients
        # would retry forever.
        # (Every account already tried by this request stays a 429 here: the dispatcher reports the upstream's
        # own failure instead.)
        if H.COOLING not in states and (H.OPEN in states or H.HALF_OPEN in states):
            return GatewayError(ErrorKind.OVERLOADED, message, retry_after=retry)
        if H.COOLING not in states and H.DISABLED in states:
            return GatewayError(ErrorKind.UPSTREAM, message)
        return GatewayError(ErrorKind.RATE_LIMITED, message, retry_after=retry)

    # ---- acquire / wait -----------------------------------------------------------------------------
    async def acquire(
        self, *, tokens: int = 0, exclude: frozenset[str] = frozenset(), deadline: float | None = None
    ) -> Lease:
        """Pick and hold an account (see the package docs). `deadline` is an absolute `time.monotonic()`."""
        hint = INF
        if not self._waiters:  # nobody queued: try at once (a newcomer never jumps the queue)
            got = (
                self._try_local(tokens, exclude) if self.shared is None else await self._try(tokens, exclude)
            )
            if isinstance(got, Lease):
                return got
            hint = got
        return await self._wait(tokens, exclude, deadline, hint)

    async def _wait(self, tokens: int, exclude: frozenset[str], deadline: float | None, hint: float) -> Lease:
        loop = asyncio.get_running_loop()
        timeout = self.provider.queue_timeout
        if deadline is not None:  # time.monotonic(), not loop.time(): uvloop's clock is its own
            timeout = min(timeout, deadline - time.monotonic())
        if len(self._waiters) >= self.opts.max_queue or timeout <= 0:
            why = "the wait queue is full" if timeout > 0 else "no time left to wait"
            raise self._busy(f"all accounts of provider '{self.name}' are busy and {why}", hint)
        w = _Waiter(loop.create_future(), tokens, exclude)
        self._waiters.append(w)
        expiry = loop.call_later(timeout, self._expire, w, timeout)
        self._arm(hint)
        try:
            return await w.fut
        except asyncio.CancelledError:
            # Cancelled (client went away) just as a lease was handed over: give the slot back.
            if w.fut.done() and not w.fut.cancelled() and w.fut.exception() is None:
                task = loop.create_task(w.fut.result().release())
                self._releasing.add(task)  # a running task needs a reference, or it may be collected
                task.add_done_callback(self._releasing.discard)
            raise
        finally:
            expiry.cancel()
            if not w.fut.done() or w.fut.cancelled():
                self._discard(w)

    def _busy(self, message: str, hint: float) -> GatewayError:
        now = time.time()
        retry = min(max(hint - now, 0.05), 60.0) if hint < INF else 1.0
        return GatewayError(ErrorKind.RATE_LIMITED, message, retry_after=round(retry, 3))

    def _expire(self, w: _Waiter, waited: float) -> None:
        if not w.fut.done():
            self._discard(w)
            hint = min((a.capped(time.time(), w.tokens) or INF) for a in self.accounts)
            w.fut.set_exception(
                self._busy(f"all accounts of provider '{self.name}' stayed busy for {waited:.1f}s", hint)
            )

    def _discard(self, w: _Waiter) -> None:
        try:
            self._waiters.remove(w)
        except ValueError:
            pass

    def _arm(self, at: float) -> None:
        """Wake the queue at `at` (epoch) — for capacity that returns with time rather than a release."""
        if at >= self._timer_at or at == INF or not self._waiters:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = at
        self._timer = asyncio.get_running_loop().call_later(max(0.0, at - time.time()), self._on_timer)

    def _on_timer(self) -> None:
        self._timer, self._timer_at = None, INF
        self._kick()

    def _kick(self) -> None:
        if not self._waiters:
            return
        if self.shared is None or not self.shared.up:
            self._drain_local()
        elif not self._draining:
            self._draining = True
            self.shared.spawn(self._drain_shared())

    def _drain_local(self) -> None:
        while self._waiters:
            w = self._waiters[0]
            if w.fut.done():
                self._waiters.popleft()
                continue
            try:
                got = self._try_local(w.tokens, w.exclude)
            except GatewayError as exc:  # nothing usable any more (e.g. the last account got disabled)
                self._waiters.popleft()
                w.fut.set_exception(exc)
                continue
            if not isinstance(got, Lease):
                self._arm(got)
                return
            self._waiters.popleft()
            w.fut.set_result(got)

    async def _drain_shared(self) -> None:
        try:
            while self._waiters:
                w = self._waiters[0]
                if w.fut.done():
                    self._waiters.popleft()
                    continue
                try:
                    got = await self._try(w.tokens, w.exclude)
                except GatewayError as exc:
                    self._discard(w)
                    if not w.fut.done():
                        w.fut.set_exception(exc)
                    continue
                if not isinstance(got, Lease):
                    self._arm(got)
                    return
                self._discard(w)
                if w.fut.done():  # expired while we were asking Redis: pass the slot on
                    await got.release()
                    continue
                w.fut.set_result(got)
        finally:
            self._draining = False

    # ---- release / outcomes -------------------------------------------------------------------------
    async def _release(self, lease: Lease) -> None:
        a = lease._acct
        a.in_flight -= 1
        if lease._ok is not None:
            outcomes.settle(self, lease)
        if lease._probe:
            a.health.probing = False  # probe over (if it never reported, another request may probe)
        if lease._slot is not None and self.shared is not None:
            # Only a queued waiter needs the slot back in Redis before it asks; otherwise don't make the
            # caller (often still answering its client) wait for a round trip.
            await self.shared.release(lease._slot, wait=bool(self._waiters))
        self._kick()

    def _record(
        self,
        lease: Lease,
        status: int | None,
        headers: Mapping[str, str] | None,
        error: ErrorKind | None,
        tokens: int,
    ) -> None:
        outcomes.apply(self, lease, status, headers, error, tokens)
