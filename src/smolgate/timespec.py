"""Times and durations read from people: `--since 24h`, `?since=2026-12-01`, `--expires 30d`, `step=1h`. One
reading everywhere (the usage views, the audit log, key expiry). Each parser raises ValueError with a message fit
to show as-is: it quotes only what it was given, cut short."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime

_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION = re.compile(r"(?:\d+(?:\.\d+)?\s*[smhdw])+")  # one or more spans: 30d, 1d12h
_SPAN = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw])")
_UNIX = re.compile(r"\d{1,12}(\.\d+)?")
_SHOWN = 40  # at most this much of a bad value goes back into a message


def shown(text: str) -> str:
    return repr(text[:_SHOWN] + ("…" if len(text) > _SHOWN else ""))


def parse_duration(text: str) -> float:
    """Seconds in `90s`, `15m`, `24h`, `7d`, `2w`, or a sum of them (`1d12h`)."""
    t = text.strip().lower()
    if not _DURATION.fullmatch(t):
        raise ValueError(
            f"{shown(text)} is not a duration: use a number and a unit, like 15m, 24h, 7d or 30d"
        )
    seconds = sum(float(m[1]) * _UNIT[m[2]] for m in _SPAN.finditer(t))
    if seconds <= 0:
        raise ValueError(f"{shown(text)} is not a positive duration")
    return seconds


def parse_time(text: str, now: float | None = None) -> float:
    """A point in time as Unix seconds: a duration ago (`24h`), Unix seconds, or an ISO 8601 date or time
    (UTC unless it says otherwise)."""
    now = time.time() if now is None else now
    t = text.strip()
    if _DURATION.fullmatch(t.lower()):
        return now - parse_duration(t)
    try:
        return float(t) if _UNIX.fullmatch(t) else _iso(t)
    except ValueError:
        raise ValueError(
            f"{shown(text)} is not a time: use a duration ago (24h, 7d), Unix seconds, or ISO 8601 "
            "(2026-12-01 or 2026-12-01T08:00:00Z)"
        ) from None


def _iso(t: str) -> float:
    dt = datetime.fromisoformat(t)
    return (dt if dt.tzinfo is not None else dt.replace(tzinfo=UTC)).timestamp()
