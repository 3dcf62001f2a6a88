"""Folding ledger rows into rollups, and choosing which rollup buckets answer a time range.

Pure functions, shared by both backends: the SQL differs only in placeholders, the arithmetic lives here."""

from __future__ import annotations

import math
from collections.abc import Iterable

from .records import UsageRow
from .schema import ROLLUP_SUMS

RollupKey = tuple[int, str, str, str, str, str, int]  # bucket + ROLLUP_DIMS


def is_error(row: UsageRow) -> bool:
    """A refusal, a failed request, or an error inside a stream (which keeps status 200)."""
    return row.status >= 400 or row.error_kind is not None


def fold(rows: Iterable[UsageRow], step: int) -> list[tuple[object, ...]]:
    """Aggregate rows into one tuple per (bucket, dims), ready for the rollup upsert: bucket, dims, sums."""
    acc: dict[RollupKey, list[float]] = {}
    for r in rows:
        key: RollupKey = (
            int(r.ts // step) * step,
            r.key_id or "",
            r.alias or "",
            r.provider or "",
            r.account or "",
            r.upstream_model or "",
            r.status // 100,
        )
        s = acc.get(key)
        if s is None:
            s = acc[key] = [0.0] * len(ROLLUP_SUMS)
        s[0] += 1
        s[1] += is_error(r)
        s[2] += r.input_tokens
        s[3] += r.cached_tokens
        s[4] += r.cache_write_tokens
        s[5] += r.output_tokens
        s[6] += r.reasoning_tokens
        s[7] += r.cost_usd
        s[8] += r.latency_ms
        if r.ttft_ms is not None:
            s[9] += r.ttft_ms
            s[10] += 1
    return [(*k, *_typed(s)) for k, s in acc.items()]


def _typed(s: list[float]) -> tuple[object, ...]:
    """Integers for the integer columns (asyncpg will not take 3.0 for a BIGINT)."""
    return (*(int(v) for v in s[:7]), s[7], s[8], s[9], int(s[10]))


class Span:
    """The buckets that cover [since, until), to the minute: whole hours from the hourly rollup and the ragged
    minutes at either end from the per-minute one, so a 30-day query reads ~720 hourly groups, not 43,200
    minute ones, and still agrees with the raw rows on minute-aligned bounds. A bucket counts when it starts
    inside the range."""

    def __init__(self, since: float, until: float) -> None:
        self.lo = math.ceil(since / 60) * 60  # the first minute bucket starting at or after `since`
        self.hi = max(self.lo, math.ceil(until / 60) * 60)  # buckets starting before `until`
        h_lo, h_hi = math.ceil(self.lo / 3600) * 3600, self.hi // 3600 * 3600
        if h_lo < h_hi:
            self.hours = (h_lo, h_hi)
            self.minutes = ((self.lo, h_lo), (h_hi, self.hi))
        else:
            self.hours = (0, 0)
            self.minutes = ((self.lo, self.hi), (0, 0))

    def args(self) -> list[int]:
        """Parameters for `SPAN_SQL`'s six placeholders."""
        return [*self.hours, *self.minutes[0], *self.minutes[1]]
