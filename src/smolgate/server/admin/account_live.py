"""The live state of each account as `GET /admin/accounts` shows it (docs/console.md), and
`POST /admin/accounts/{name}/test`: one short request through that account only.

The pool (pool/) already knows it all; this module only shapes it: the health state and why, in-flight, the
last errors (the pool keeps them as short notes, `HH:MM:SS <status or kind> <what>`, parsed back here), and the
rate-limit headroom the upstream announced in its headers. Names only, never a key.
"""

from __future__ import annotations

import re
import time
from typing import TYPE_CHECKING

import msgspec

from ...canonical import Message, Request, Text
from ...errors import ErrorKind, GatewayError, invalid
from ...pool import AccountStatus, Pools
from ...pool.state_memory import AccountState

if TYPE_CHECKING:
    from ..runtime import Runtime

PROMPT = "Reply with the word OK."
MAX_TOKENS = 16
_NOTE = re.compile(r"(\d\d):(\d\d):(\d\d) (\S+)(?: (.*))?")
_KINDS = frozenset(k.value for k in ErrorKind)


class RecentError(msgspec.Struct, kw_only=True):
    ts: float  # Unix seconds
    kind: str  # an error kind (rate_limited, upstream, timeout, auth, …)
    status: int | None  # the upstream's HTTP status, when it answered
    message: str


class RateLimit(msgspec.Struct, kw_only=True):
    requests_remaining: int | None
    tokens_remaining: int | None
    reset: float | None  # Unix seconds of the soonest announced reset


class AccountRow(msgspec.Struct, kw_only=True):
    provider: str
    account: str
    state: str  # healthy | cooling | open (circuit breaker) | half_open | disabled
    until: float | None  # when a cooldown or open breaker ends (Unix seconds)
    reason: str | None
    in_flight: int
    recent_errors: list[RecentError]
    ratelimit: RateLimit | None  # only when the upstream sent rate-limit headers
    rpm_used: int | None
    tpm_used: int | None
    max_concurrency: int | None = None
    in_flight_all_replicas: int | None = None


def _kind(status: int | None, word: str) -> str:
    if status is None:
        return word if word in _KINDS else ErrorKind.UPSTREAM.value
    if status == 429:
        return ErrorKind.RATE_LIMITED.value
    if status in (401, 403):
        return ErrorKind.AUTH.value
    return ErrorKind.UPSTREAM.value if status >= 500 else ErrorKind.INVALID_REQUEST.value


def parse_note(note: str, now: float) -> RecentError:
    """One pool note (`pool/state_memory.py` `note`: a UTC clock time, then what happened) as a record."""
    m = _NOTE.fullmatch(note)
    if m is None:
        return RecentError(ts=now, kind=ErrorKind.UPSTREAM.value, status=None, message=note)
    day = now - now % 86400
    ts = day + int(m[1]) * 3600 + int(m[2]) * 60 + int(m[3])
    if ts > now + 1:  # the note was written before UTC midnight
        ts -= 86400
    word = m[4]
    status = int(word) if word.isdigit() else None
    return RecentError(ts=ts, kind=_kind(status, word), status=status, message=note[9:])


def _ratelimit(s: AccountStatus, a: AccountState | None, now: float) -> RateLimit | None:
    if s.remaining_requests is None and s.remaining_tokens is None:
        return None
    resets = [r for r in (a.rl.reset_requests, a.rl.reset_tokens) if r is not None and r > now] if a else []
    return RateLimit(
        requests_remaining=s.remaining_requests,
        tokens_remaining=s.remaining_tokens,
        reset=min(resets) if resets else None,
    )


def rows(pools: Pools | None) -> list[AccountRow]:
    if pools is None:
        return []
    now = time.time()
    state = {(p.name, a.name): a for p in pools for a in p.accounts}
    return [
        AccountRow(
            provider=s.provider,
            account=s.account,
            state=s.state,
            until=s.until,
            reason=s.reason,
            in_flight=s.in_flight,
            recent_errors=[parse_note(n, now) for n in s.recent_errors],
            ratelimit=_ratelimit(s, state.get((s.provider, s.account)), now),
            rpm_used=s.rpm_used,
            tpm_used=s.tpm_used,
            max_concurrency=s.max_concurrency,
            in_flight_all_replicas=s.in_flight_all_replicas,
        )
        for s in pools.snapshot()
    ]


class AccountTest(msgspec.Struct, kw_only=True):
    ok: bool
    status: int  # the upstream's HTTP status (or the gateway's, when no answer came)
    latency_ms: float
    error: str | None = None  # scrubbed: never a key


def probe_request(model: str) -> Request:
    return Request(
        model=model, messages=[Message(role="user", content=[Text(PROMPT)])], max_tokens=MAX_TOKENS
    )


def _model_for(rt: Runtime, provider: str) -> str:
    """The upstream model to test an account with: the first alias target on its provider."""
    for m in rt.cfg.models:
        for t in m.targets:
            if t.provider == provider:
                return t.model
    if provider in rt.providers and getattr(rt.providers[provider], "model_infos", None) is not None:
        return "default"  # the local engine: its one model
    raise invalid(f"no model alias routes to provider '{provider}': nothing to test the account with")


async def test_account(rt: Runtime, provider_name: str, account: str) -> AccountTest:
    """One short request to that account's provider with that account's key, outside the pool (it takes no
    slot and changes no health state: a probe, not traffic)."""
    pools, provider = rt.pools, rt.providers.get(provider_name)
    acct = next((a for a in pools.get(provider_name).accounts if a.name == account), None) if pools else None
    if provider is None or acct is None:
        raise invalid(f"account '{account}' is not loaded in provider '{provider_name}' yet; retry shortly")
    model = _model_for(rt, provider_name)
    key = acct.cfg.api_key.reveal() if acct.cfg.api_key else None
    t0 = time.perf_counter()
    try:
        _, status, _ = await provider.complete(probe_request(model), model, key)
    except GatewayError as exc:
        ms = (time.perf_counter() - t0) * 1000
        status = exc.upstream_status or exc.status
        return AccountTest(ok=False, status=status, latency_ms=round(ms, 1), error=exc.message)
    return AccountTest(ok=True, status=status, latency_ms=round((time.perf_counter() - t0) * 1000, 1))
