"""Folding ledger rows into rollups, and choosing which rollup buckets answer a time range.

Pure functions, shared by both backends: the SQL differs only in placeholders, the arithmetic lives here."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

from .histogram import BUCKETS, bucket_of
from .records import UsageRow
from .schema import ROLLUP_DIMS, ROLLUP_HISTS, ROLLUP_SUMS, ROLLUP_TABLES

SPAN_COLS = ", ".join(("bucket", *ROLLUP_DIMS, *ROLLUP_SUMS, *ROLLUP_HISTS))
_WIDTH = len(ROLLUP_SUMS) + len(ROLLUP_HISTS)
_LAT = len(ROLLUP_SUMS)  # where the latency histogram starts in a group's sums; the TTFT one follows it
_TTFT = _LAT + BUCKETS
RollupKey = tuple[int, str, str, str, str, str, int]  # bucket + ROLLUP_DIMS


def is_error(row: UsageRow) -> bool:
    """A refusal, a failed request, or an error inside a stream (which keeps status 200)."""
    return row.status >= 400 or row.error_kind is not None


def fold(rows: Iterable[UsageRow], steps: Iterable[int]) -> dict[int, list[tuple[object, ...]]]:
    """Aggregate rows into one tuple per (bucket, dims) for each step (seconds; each a multiple of the first),
    ready for the rollup upserts: bucket, dims, sums, histograms. The finest step is folded from the rows, the coarser ones
    from it (a batch's rows collapse to a few groups per minute, so every coarser step costs almost nothing)."""
    first, *coarser = sorted(steps)
    acc: dict[RollupKey, list[float]] = {}
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
        s = acc.get(row_key)
        if s is None:
            s = acc[row_key] = [0.0] * _WIDTH
        s[0] += 1
        s[1] += is_error(r)
        s[2] += r.input_tokens
        s[3] += r.cached_tokens
        s[4] += r.cache_write_tokens
        s[5] += r.output_tokens
        s[6] += r.reasoning_tokens
        s[7] += r.cost_usd
        s[8] += r.latency_ms
        s[_LAT + bucket_of(r.latency_ms)] += 1
        if r.ttft_ms is not None:
            s[9] += r.ttft_ms
            s[10] += 1
            s[_TTFT + bucket_of(r.ttft_ms)] += 1
    out = {first: _rows(acc)}
    for step in coarser:
        wide: dict[RollupKey, list[float]] = {}
        for k, sums in acc.items():
            key: RollupKey = (k[0] // step * step, k[1], k[2], k[3], k[4], k[5], k[6])
            w = wide.get(key)
            if w is None:
                wide[key] = list(sums)
            else:
                for i, v in enumerate(sums):
                    w[i] += v
        out[step] = _rows(wide)
    return out


def _rows(acc: dict[RollupKey, list[float]]) -> list[tuple[object, ...]]:
    # in key order: concurrent writers (replicas) then lock rollup rows in one order, so they cannot deadlock
    return [(*k, *_typed(acc[k])) for k in sorted(acc)]


def _typed(s: list[float]) -> tuple[object, ...]:
    """Integers for the integer columns (asyncpg will not take 3.0 for a BIGINT); an empty histogram bucket is
    NULL (schema.py, migration 4)."""
    return (*(int(v) for v in s[:7]), s[7], s[8], s[9], int(s[10]), *(int(v) or None for v in s[_LAT:]))


class Span:
    """The rollup buckets that cover [since, until), to the minute: whole UTC days from the daily rollup, the
    ragged hours at either end from the hourly one, the ragged minutes from the per-minute one. A 30-day query
    reads ~30 groups per combination instead of 43,200, and still agrees with the raw rows on minute-aligned
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

    def sql(self, where: str = "", args: Sequence[object] = ()) -> tuple[str, list[object]]:
        """A FROM-clause subquery over the rollup rows in the span (each table's rows through its index on
        bucket), with an optional extra condition pushed into each part; and its parameters."""
        parts, params = [], []
        for step, ranges in self.ranges.items():
            if not ranges:
                continue
            cond = " OR ".join("(bucket >= ? AND bucket < ?)" for _ in ranges)
            parts.append(
                f"SELECT {SPAN_COLS} FROM {ROLLUP_TABLES[step]} WHERE ({cond}){where and ' AND ' + where}"
            )
            params += [v for r in ranges for v in r] + list(args)
        if not parts:  # an empty range: no rows, same columns
            parts.append(f"SELECT {SPAN_COLS} FROM usage_minute WHERE bucket < 0")
        return f"({' UNION ALL '.join(parts)}) AS span", params
