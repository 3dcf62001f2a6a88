"""`/admin/usage`: the usage ledger's totals, time series and newest rows, read from the store (totals and
series from its rollups). Query parameters are checked one by one: a bad one is a 400 naming it."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import msgspec

from ...errors import ErrorKind, GatewayError, invalid
from ...store import Store, UsageBucket
from ...usage_query import derived, parse_group, parse_step, parse_time
from ..asgi import HttpRequest, Receive, Send
from .common import AdminRoute, reply

if TYPE_CHECKING:
    from ..runtime import Runtime

T = TypeVar("T")
DEFAULT_WINDOW = 86400.0  # since: the last 24 hours
MAX_GROUPS = 1000
MAX_RECENT = 1000
MAX_BUCKETS = (
    10_000  # a series longer than this is refused (a year of hours fits; a year of minutes does not)
)


def _store(rt: Runtime) -> Store:
    if rt.store is None:
        raise GatewayError(ErrorKind.OVERLOADED, "the store is not open", status=503)
    return rt.store


def _allowed(req: HttpRequest, names: tuple[str, ...]) -> None:
    for name in req.query:
        if name not in names:
            raise invalid(
                f"unknown query parameter {name[:40]!r}; this route takes {', '.join(names)}", name[:40]
            )


def _param(req: HttpRequest, name: str, parse: Callable[[str], T], default: T) -> T:
    raw = req.query.get(name)
    if raw is None:
        return default
    try:
        return parse(raw)
    except ValueError as exc:
        raise invalid(f"{name}: {exc}", name) from None


def _count(limit: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        if not text.isdigit() or not 1 <= int(text) <= limit:
            raise ValueError(f"want a whole number from 1 to {limit}")
        return int(text)

    return parse


def _bucket(b: UsageBucket) -> dict[str, Any]:
    """The sums and derived figures; the histograms themselves stay out (22 counts each, read as percentiles)."""
    out = {**msgspec.to_builtins(b), **derived(b)}
    del out["latency_hist"], out["ttft_hist"]
    return out


def _window(req: HttpRequest) -> tuple[float, float]:
    now = time.time()
    since = _param(req, "since", lambda t: parse_time(t, now), now - DEFAULT_WINDOW)
    until = _param(req, "until", lambda t: parse_time(t, now), now)
    if until <= since:
        raise invalid("until: must be later than since", "until")
    return since, until


async def totals(rt: Runtime, req: HttpRequest, params: dict[str, str], send: Send, receive: Receive) -> None:
    _allowed(req, ("since", "until", "by", "limit"))
    since, until = _window(req)
    by = _param(req, "by", parse_group, None)
    limit = _param(req, "limit", _count(MAX_GROUPS), 100)
    store = _store(rt)
    groups = await store.usage_totals(since, until, by, limit) if by is not None else []
    total = await store.usage_totals(since, until, None, 1)
    body: dict[str, Any] = {
        "since": since,
        "until": until,
        "by": by,
        "total": _bucket(total[0] if total else UsageBucket(group=None)),
        "groups": [_bucket(b) for b in groups],
    }
    await reply(send, body)


async def series(rt: Runtime, req: HttpRequest, params: dict[str, str], send: Send, receive: Receive) -> None:
    _allowed(req, ("since", "until", "step", "key"))
    since, until = _window(req)
    step = _param(req, "step", parse_step, 3600)
    if (until - since) / step > MAX_BUCKETS:
        raise invalid(f"step: more than {MAX_BUCKETS} buckets; use a larger step or a shorter window", "step")
    key = req.query.get("key") or None
    buckets = await _store(rt).usage_series(since, until, step, key)
    await reply(
        send,
        {"since": since, "until": until, "step": step, "key": key, "buckets": [_bucket(b) for b in buckets]},
    )


async def recent(rt: Runtime, req: HttpRequest, params: dict[str, str], send: Send, receive: Receive) -> None:
    _allowed(req, ("limit", "key"))
    limit = _param(req, "limit", _count(MAX_RECENT), 100)
    rows = await _store(rt).recent_usage(limit, req.query.get("key") or None)
    await reply(send, {"rows": rows})


ROUTES = [
    AdminRoute("GET", "/admin/usage", totals, "usage and cost totals over a window, optionally per group"),
    AdminRoute(
        "GET", "/admin/usage/series", series, "usage and cost per time bucket (a key's, or everyone's)"
    ),
    AdminRoute("GET", "/admin/usage/recent", recent, "the newest usage rows (one per request)"),
]
