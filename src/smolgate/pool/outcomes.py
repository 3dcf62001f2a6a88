"""What one attempt's outcome does to its account: budget from headers, cooldowns, breaker, disabling.

Kept apart from accounts.py (which picks and waits) because this is the part with policy in it: which
status means what, how long to cool down, and what the other replicas are told.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING

from ..errors import ErrorKind
from . import health as H
from .ratelimit_headers import parse as parse_headers
from .state_memory import AccountState

if TYPE_CHECKING:
    from .accounts import AccountPool, Lease

log = logging.getLogger("smolgate.pool")


def apply(
    pool: AccountPool,
    lease: Lease,
    status: int | None,
    headers: Mapping[str, str] | None,
    error: ErrorKind | None,
    tokens: int,
) -> None:
    """Update the lease's account from one attempt's outcome (a success is only noted; see `settle`)."""
    a = lease._acct
    now, hl, opts = time.time(), a.health, pool.opts
    info = parse_headers(headers, now) if headers else None
    announced = False
    if info is not None and not info.empty:
        a.observe(info)
        announced = True
    delta = tokens - lease._tokens if tokens else 0  # correct the token window from the estimate to the truth
    if delta and a.tok is not None:
        a.tok.add(now, delta)
        lease._tokens = tokens
    outcome = H.classify(status, error)
    what = str(status) if status is not None else (error.value if error else "error")
    until, bp = 0.0, pool.provider.breaker
    lease._ok = outcome if outcome in (H.Outcome.OK, H.Outcome.NEUTRAL) else None
    if lease._ok is not None:
        if (announced or (delta and a.cfg.tpm)) and pool.shared is not None and pool.shared.up:
            _share(pool, a, "budget", now, 0.0, announced, delta)  # the budget now, health at settle
        return
    if outcome is H.Outcome.RATE_LIMITED or (status in (503, 529) and info and info.retry_after is not None):
        if info is not None and info.retry_after is not None:
            delay, how = info.retry_after, f"retry-after {info.retry_after:g}s"
        elif info is not None and (ex := info.exhausted_until(now)) is not None:
            delay, how = ex - now, "until the announced reset"
        else:
            delay, how = H.backoff(hl.level, opts.backoff_base, opts.backoff_cap), "backoff"
        until = now + min(delay, opts.max_cooldown)
        if hl.state != H.COOLING:  # one log line per transition, not per throttled request
            log.warning(
                "account %s of %s got %s: cooling down for %.1fs", a.name, pool.name, what, until - now
            )
        hl.on_rate_limited(until, f"{what}: cooling down ({how})")
        a.note(f"{what} cooling {until - now:.1f}s")
        outcome = H.Outcome.RATE_LIMITED
    elif outcome is H.Outcome.FAILURE:
        if hl.on_failure(now, bp.failures, bp.cooldown, f"{what}: circuit open"):
            log.warning(
                "account %s of %s: circuit open after %s (%d consecutive failures)",
                a.name,
                pool.name,
                what,
                hl.failures,
            )
        a.note(what)
    elif outcome is H.Outcome.AUTH:
        if hl.state != H.DISABLED:
            log.error("account %s of %s disabled: upstream answered %s", a.name, pool.name, what)
        hl.on_auth(f"{what}: upstream rejected the key; disabled until it is fixed")
        a.note(f"{what} disabled")
    if pool.shared is not None and pool.shared.up:
        _share(pool, a, outcome.value, now, until, announced, delta)


def settle(pool: AccountPool, lease: Lease) -> None:
    """At release: the attempt ended without a failure after its success was recorded — now it counts.
    A 400 proves the upstream is alive (closes the breaker) but says nothing about its rate limit."""
    ok = lease._ok
    if lease._acct.health.on_success(reset_backoff=ok is H.Outcome.OK):
        log.info("account %s of %s is healthy again", lease._acct.name, pool.name)
    if pool.shared is not None and pool.shared.up and ok is not None:
        _share(pool, lease._acct, ok.value, time.time(), 0.0, False, 0)


def _share(
    pool: AccountPool, a: AccountState, kind: str, now: float, until: float, announced: bool, delta: int
) -> None:
    assert pool.shared is not None
    bp = pool.provider.breaker

    def adopt(res: tuple[str, float, str]) -> None:
        # Adopt a worse state the replicas reached together (their failures combined opened the breaker,
        # another replica's 401 disabled the key); never let the shared view erase a cooldown seen here.
        if res[0] in (H.COOLING, H.OPEN, H.DISABLED) and res[1] >= a.health.until:
            a.health.mirror(res[0], res[1], res[2] or None)

    pool.shared.record(
        pool.prefix(a),
        kind,
        now,
        until=until,
        cooldown=bp.cooldown,
        threshold=bp.failures,
        reason=a.health.reason or "",
        fp=a.key_fp,
        token_delta=delta if a.cfg.tpm else 0,
        on_result=adopt,
        # the budget the upstream announced, only when this outcome carried one
        rem_req=a.est_req if announced else None,
        reset_req=a.rl.reset_requests if announced else None,
        rem_tok=a.est_tok if announced else None,
        reset_tok=a.rl.reset_tokens if announced else None,
    )
