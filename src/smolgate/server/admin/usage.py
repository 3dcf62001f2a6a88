"""`/admin/usage`: the usage ledger's totals, time series and newest rows, read from the store (totals and
series from its rollups). Query parameters are checked one by one: a bad one is a 400 naming it."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar, cast

import msgspec

from ...errors import ErrorKind, GatewayError, invalid
from ...store import Store, UsageBucket
from ...store.records import StatusFilter
from ...usage_query import derived, parse_group, parse_step, parse_time
from ..asgi import HttpRequest, Receive, Send, send_body
from .common import AdminRoute, reply
from .usage_csv import usage_csv

if TYPE_CHECKING:
    from ..runtime import Runtime

T = TypeVar("T")
DEFAULT_WINDOW = 86400.0  # since: the last 24 hours
MAX_GROUPS = 1000
MAX_RECENT = 1000
MAX_CSV = 100_000  # rows in one CSV export
MAX_TEXT = 256  # a filter's value (the ledger keeps at most 256 characters of each text field)
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


def _percentiles(text: str) -> str:
    if text not in ("total", "all"):
        raise ValueError("want total (the window's total only) or all (each group's too)")
    return text


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
    _allowed(req, TOTALS_QUERY)
    since, until = _window(req)
    by = _param(req, "by", parse_group, None)
    limit = _param(req, "limit", _count(MAX_GROUPS), 100)
    # The total always carries percentiles; the groups only when asked: summing the histograms of every group
    # is most of a grouped query's cost (a dashboard's top-N lists show sums)
    each = _param(req, "percentiles", _percentiles, "total") == "all"
    store = _store(rt)
    groups = await store.usage_totals(since, until, by, limit, percentiles=each) if by is not None else []
    total = await store.usage_totals(since, until, None, 1, percentiles=True)
    body: dict[str, Any] = {
        "since": since,
        "until": until,
        "by": by,
        "total": _bucket(total[0] if total else UsageBucket(group=None)),
        "groups": [_bucket(b) for b in groups],
    }
    await reply(send, body)


async def series(rt: Runtime, req: HttpRequest, params: dict[str, str], send: Send, receive: Receive) -> None:
    _allowed(req, SERIES_QUERY)
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


def _status(text: str) -> StatusFilter:
    if text in ("ok", "error"):
        return cast(StatusFilter, text)
    if text.isdigit() and 100 <= int(text) <= 599:
        return int(text)
    raise ValueError("want ok (below 400), error (400 and above), or one HTTP status code")


def _text(text: str) -> str:
    if len(text) > MAX_TEXT:
        raise ValueError(f"at most {MAX_TEXT} characters")
    return text


async def recent(rt: Runtime, req: HttpRequest, params: dict[str, str], send: Send, receive: Receive) -> None:
    _allowed(req, RECENT_QUERY)
    fmt = req.query.get("format", "json")
    if fmt not in ("json", "csv"):
        raise invalid("format: want json or csv", "format")
    now = time.time()
    since = _param(req, "since", lambda t: parse_time(t, now), None)
    until = _param(req, "until", lambda t: parse_time(t, now), None)
    if since is not None and until is not None and until <= since:
        raise invalid("until: must be later than since", "until")
    limit = _param(req, "limit", _count(MAX_CSV if fmt == "csv" else MAX_RECENT), 100)
    rows = await _store(rt).recent_usage(
        limit,
        _param(req, "key", _text, "") or None,
        since=since,
        until=until,
        alias=_param(req, "alias", _text, "") or None,
        account=_param(req, "account", _text, "") or None,
        status=_param(req, "status", _status, None),
    )
    if fmt == "json":
        await reply(send, {"rows": rows})
        return
    disposition = f'attachment; filename="smolgate-usage-{int(now)}.csv"'
    await send_body(
        send, 200, usage_csv(rows), "text/csv; charset=utf-8", {"content-disposition": disposition}
    )


TOTALS_QUERY = ("since", "until", "by", "limit", "percentiles")
SERIES_QUERY = ("since", "until", "step", "key")
RECENT_QUERY = ("since", "until", "key", "alias", "account", "status", "limit", "format")
ROUTES = [
    AdminRoute(
        "GET", "/admin/usage", totals, "usage and cost totals over a window, optionally per group",
        query=TOTALS_QUERY,
    ),
    AdminRoute(
        "GET", "/admin/usage/series", series, "usage and cost per time bucket (a key's, or everyone's)",
        query=SERIES_QUERY,
    ),
    AdminRoute(
        "GET", "/admin/usage/recent", recent,
        "the newest usage rows (one per request), filtered; format=csv for a spreadsheet",
        query=RECENT_QUERY,
    ),
]  # fmt: skip
