"""What the usage views share (`smolgate usage`, `/admin/usage`): reading times, durations and groupings from
people, and the figures derived from a bucket's sums. Every parser raises ValueError with a message fit to show
as-is (it quotes only what it was given, cut short)."""

from __future__ import annotations

import time
from typing import Any, cast, get_args

from .store.histogram import percentile
from .store.records import GroupBy, UsageBucket
from .timespec import parse_duration, parse_time
from .timespec import shown as _shown

GROUPS: tuple[str, ...] = get_args(GroupBy)
__all__ = ["GROUPS", "derived", "parse_duration", "parse_group", "parse_step", "parse_time", "parse_window"]


def parse_window(since: str, until: str | None, now: float | None = None) -> tuple[float, float]:
    now = time.time() if now is None else now
    start = parse_time(since, now)
    end = parse_time(until, now) if until else now
    if end <= start:
        raise ValueError("'until' must be later than 'since'")
    return start, end


def parse_group(text: str | None) -> GroupBy | None:
    if text is None or text in ("", "all", "none"):
        return None
    if text not in GROUPS:
        raise ValueError(f"cannot group by {_shown(text)}: use one of {', '.join(GROUPS)}")
    return cast(GroupBy, text)


def parse_step(text: str) -> int:
    """A series' bucket: one minute, or a whole number of hours (the rollups' granularities)."""
    step = parse_duration(text) if not text.strip().isdigit() else float(text)
    if step != 60 and (step < 3600 or step % 3600):
        raise ValueError(f"step {_shown(text)}: use 1m, or whole hours (1h, 6h, 24h)")
    return int(step)


def derived(b: UsageBucket) -> dict[str, Any]:
    """A bucket's sums plus what people read: error %, average and p50/p99 latency and time to first token (the
    percentiles interpolated within the rollups' histogram buckets: store/histogram.py; None without data)."""
    return {
        "error_pct": 100.0 * b.errors / b.requests if b.requests else 0.0,
        "avg_latency_ms": b.latency_ms_sum / b.requests if b.requests else None,
        "avg_ttft_ms": b.ttft_ms_sum / b.ttft_count if b.ttft_count else None,
        "latency_p50_ms": percentile(b.latency_hist, 0.5),
        "latency_p99_ms": percentile(b.latency_hist, 0.99),
        "ttft_p50_ms": percentile(b.ttft_hist, 0.5),
        "ttft_p99_ms": percentile(b.ttft_hist, 0.99),
    }
