"""What the usage views share (`smolgate usage`, `/admin/usage`): reading times, durations and groupings from
people, and the figures derived from a bucket's sums. Every parser raises ValueError with a message fit to show
as-is (it quotes only what it was given, cut short)."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime
from typing import Any, cast, get_args

from .store.histogram import percentile
from .store.records import GroupBy, UsageBucket

GROUPS: tuple[str, ...] = get_args(GroupBy)
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")
_SHOWN = 40  # at most this much of a bad value goes back into a message


def _shown(text: str) -> str:
    return repr(text[:_SHOWN] + ("…" if len(text) > _SHOWN else ""))


def parse_duration(text: str) -> float:
    """`15m`, `24h`, `7d`, `2w`, `90s` → seconds."""
    m = _DURATION.fullmatch(text.strip().lower())
    if m is None:
        raise ValueError(
            f"{_shown(text)} is not a duration: use a number and a unit, like 15m, 24h, 7d or 30d"
        )
    seconds = float(m.group(1)) * _UNITS[m.group(2)]
    if seconds <= 0:
        raise ValueError(f"{_shown(text)} is not a positive duration")
    return seconds


def parse_time(text: str, now: float | None = None) -> float:
    """A point in time as Unix seconds: a duration ago (`24h`), Unix seconds, or an ISO 8601 date or time
    (UTC unless it says otherwise)."""
    now = time.time() if now is None else now
    t = text.strip()
    if _DURATION.fullmatch(t.lower()):
        return now - parse_duration(t)
    try:
        return float(t) if re.fullmatch(r"\d{1,12}(\.\d+)?", t) else _iso(t)
    except ValueError:
        raise ValueError(
            f"{_shown(text)} is not a time: use a duration ago (24h, 7d), Unix seconds, or ISO 8601 "
            "(2026-12-01 or 2026-12-01T08:00:00Z)"
        ) from None


def _iso(t: str) -> float:
    dt = datetime.fromisoformat(t)
    return (dt if dt.tzinfo is not None else dt.replace(tzinfo=UTC)).timestamp()


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
