"""Folding ledger rows into rollups, and choosing which rollup buckets answer a time range.

Pure functions, shared by both backends: the SQL differs only in placeholders, the arithmetic lives here."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from .histogram import BUCKETS, bucket_of
from .records import UsageRow
from .schema import DIM_TABLES, DIMENSIONS, ROLLUP_HISTS, ROLLUP_SUMS, ROLLUP_TABLES

_HISTS = len(ROLLUP_HISTS)  # latency buckets, then TTFT buckets
RollupKey = tuple[int, str, str, str, str, str, int]  # bucket + ROLLUP_DIMS


def is_error(row: UsageRow) -> bool:
    """A refusal, a failed request, or an error inside a stream (which keeps status 200)."""
    return row.status >= 400 or row.error_kind is not None


class _Group:
    """One rollup row being folded: the sums, and the non-empty histogram buckets (sparse: a group holds a few
    requests, and 44 mostly-empty counts per group would cost more than the sums)."""

    __slots__ = ("hist", "sums")

    def __init__(self, sums: list[float], hist: dict[int, int]) -> None:
        self.sums, self.hist = sums, hist

    def add(self, other: _Group) -> None:
        self.sums = [a + b for a, b in zip(self.sums, other.sums, strict=True)]
        h = self.hist
        for b, n in other.hist.items():
            h[b] = h.get(b, 0) + n

    def values(self, empty: int | None) -> tuple[object, ...]:
        """Integers for the integer columns (asyncpg will not take 3.0 for a BIGINT); an empty histogram bucket is
        `empty` (0 for SQLite, NULL for PostgreSQL: schema.py, migration 4)."""
        s, hist = self.sums, [empty] * _HISTS
        for b, n in self.hist.items():
            hist[b] = n
        return (*(int(v) for v in s[:7]), s[7], s[8], s[9], int(s[10]), *hist)


def dim_values(k: RollupKey) -> tuple[tuple[str, str], ...]:
    """A combination's value in each dimension, as schema.DIMENSIONS computes it in SQL."""
    _, key_id, alias, provider, account, model, status = k
    return (
        ("all", ""),
        ("key", key_id),
        ("model", model),
        ("alias", alias),
        ("account", f"{provider}/{account}" if provider or account else ""),
        ("provider", provider),
        ("status", f"{status}xx"),
    )


def fold(rows: Iterable[UsageRow], empty: int | None = 0) -> dict[str, list[tuple[object, ...]]]:
    """Aggregate rows into one tuple per bucket and combination (ROLLUP_TABLES) or dimension value (DIM_TABLES),
    by table, ready for the rollup upserts: bucket, dims (or dim and value), sums, histograms. The minutes are
    folded from the rows, everything coarser from them (a batch's rows collapse to a few groups per minute, so every
    coarser table costs little)."""
    first = min(ROLLUP_TABLES)
    acc: dict[RollupKey, _Group] = {}
    for r in rows:
        row_key: RollupKey = (
            int(r.ts // first) * first,
            r.key_id or "",
            r.alias or "",
            r.provider or "",
            r.account or "",
            r.upstream_model or "",
            r.status // 100,
        )
        g = acc.get(row_key)
        if g is None:
            g = acc[row_key] = _Group([0.0] * len(ROLLUP_SUMS), {})
        s, h = g.sums, g.hist
        s[0] += 1
        s[1] += is_error(r)
        s[2] += r.input_tokens
        s[3] += r.cached_tokens
        s[4] += r.cache_write_tokens
        s[5] += r.output_tokens
        s[6] += r.reasoning_tokens
        s[7] += r.cost_usd
        s[8] += r.latency_ms
        b = bucket_of(r.latency_ms)
        h[b] = h.get(b, 0) + 1
        if r.ttft_ms is not None:
            s[9] += r.ttft_ms
            s[10] += 1
            b = BUCKETS + bucket_of(r.ttft_ms)
            h[b] = h.get(b, 0) + 1
    # each level from the one before it: minutes → hours → days, hours → dimensions by hour → by day
    hours = _coarser(acc, 3600, _same)
    hour_dims = _coarser(hours, 3600, dim_values)
    levels: dict[str, Mapping[Any, _Group]] = {
        ROLLUP_TABLES[60]: acc,
        ROLLUP_TABLES[3600]: hours,
        ROLLUP_TABLES[86400]: _coarser(hours, 86400, _same),
        DIM_TABLES[3600]: hour_dims,
        DIM_TABLES[86400]: _coarser(hour_dims, 86400, _same),
    }
    return {table: _rows(groups, empty) for table, groups in levels.items()}


def _same(k: tuple[Any, ...]) -> tuple[tuple[Any, ...]]:
    return (k[1:],)


def _coarser(
    acc: Mapping[Any, _Group], step: int, keys: Callable[[Any], Iterable[tuple[object, ...]]]
) -> dict[tuple[object, ...], _Group]:
    """The groups of `acc` summed into `step`-second buckets, under each of the keys `keys` gives a group."""
    wide: dict[tuple[object, ...], _Group] = {}
    for k, g in acc.items():
        bucket = k[0] // step * step
        for rest in keys(k):
            key = (bucket, *rest)
            w = wide.get(key)
            if w is None:
                wide[key] = _Group(g.sums, dict(g.hist))  # (add() replaces the sums list, never changes it)
            else:
                w.add(g)
    return wide


def _rows(acc: Mapping[Any, _Group], empty: int | None) -> list[tuple[object, ...]]:
    # in key order: concurrent writers (replicas) then lock rollup rows in one order, so they cannot deadlock
    return [(*k, *acc[k].values(empty)) for k in sorted(acc)]


class Span:
    """The rollup buckets that cover [since, until), to the minute: whole UTC days from the daily rollup, the
    ragged hours at either end from the hourly one, the ragged minutes from the per-minute one. A 30-day query
    reads ~30 rows per dimension value instead of 43,200, and still agrees with the raw rows on minute-aligned
    bounds. A bucket counts when it starts inside the range."""

    def __init__(self, since: float, until: float) -> None:
        lo = math.ceil(since / 60) * 60  # the first minute bucket starting at or after `since`
        hi = max(lo, math.ceil(until / 60) * 60)  # buckets starting before `until`
        self.ranges: dict[int, list[tuple[int, int]]] = {step: [] for step in ROLLUP_TABLES}
        self._cover(lo, hi, sorted(ROLLUP_TABLES, reverse=True))

    def _cover(self, lo: int, hi: int, steps: list[int]) -> None:
        step, finer = steps[0], steps[1:]
        if not finer:
            if lo < hi:
                self.ranges[step].append((lo, hi))
            return
        a, b = math.ceil(lo / step) * step, hi // step * step
        if a < b:
            self.ranges[step].append((a, b))
            self._cover(lo, a, finer)
            self._cover(b, hi, finer)
        else:
            self._cover(lo, hi, finer)

    def sql(self, dim: str, value: str | None = None, hists: bool = False) -> tuple[str, list[object]]:
        """A FROM-clause subquery `span (bucket, grp, sums…[, histograms…])`: the rollup rows in the span, each
        with its value in dimension `dim` (schema.DIMENSIONS) as `grp`, only those equal to `value` when given,
        the histograms when asked; and its parameters. Hours and days come from the per-dimension rollups, the
        ragged minutes from the combinations, all through an index on the bucket."""
        sums = ", ".join((*ROLLUP_SUMS, *ROLLUP_HISTS) if hists else ROLLUP_SUMS)
        parts, params = [], []
        for step, ranges in self.ranges.items():
            if not ranges:
                continue
            cond = " OR ".join("(bucket >= ? AND bucket < ?)" for _ in ranges)
            bounds = [v for r in ranges for v in r]
            if step in DIM_TABLES:
                match = "" if value is None else " AND value = ?"
                parts.append(
                    f"SELECT bucket, value AS grp, {sums} FROM {DIM_TABLES[step]} WHERE dim = ? AND ({cond}){match}"
                )
                params += [dim, *bounds]
            else:
                expr = DIMENSIONS[dim]
                match = "" if value is None else f" AND {expr} = ?"
                parts.append(
                    f"SELECT bucket, {expr} AS grp, {sums} FROM {ROLLUP_TABLES[step]} WHERE ({cond}){match}"
                )
                params += bounds
            if value is not None:
                params.append(value)
        if not parts:  # an empty range: no rows, same columns
            parts.append(f"SELECT bucket, '' AS grp, {sums} FROM usage_minute WHERE bucket < 0")
        return f"({' UNION ALL '.join(parts)}) AS span", params
