"""`--since 24h` and `?since=`: a duration back from now (s, m, h, d, w) or Unix seconds."""

from __future__ import annotations

import re
import time

_SPAN = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_since(text: str, now: float | None = None) -> float:
    """Unix seconds. Raises ValueError with a message for people."""
    t = text.strip().lower()
    m = _SPAN.fullmatch(t)
    if m:
        return (time.time() if now is None else now) - float(m[1]) * _UNIT[m[2]]
    try:
        value = float(t)
    except ValueError:
        raise ValueError(
            f"since must be a duration such as 30m, 24h, 7d, or Unix seconds: {text[:40]!r}"
        ) from None
    if not 0 <= value < 1e11:
        raise ValueError("since in Unix seconds is out of range")
    return value
