"""Retry-After, both ways: the one parser for upstream replies and the one renderer for ours.

An upstream says when to come back as `retry-after-ms` (OpenAI, Anthropic), `retry-after` in delta seconds
or as an HTTP date (RFC 9110 §10.2.3), or in its own error body (Gemini's `RetryInfo.retryDelay`, "12.5s"):
a protocol hands that body hint to `from_headers`, which prefers the headers. Every answer is seconds from
now, never negative; anything unreadable is None, so the pool falls back to its own cooldown.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from email.utils import parsedate_to_datetime


def parse(value: str, now: float | None = None) -> float | None:
    """`retry-after`: delta seconds (fractions accepted) or an HTTP date → seconds from `now`."""
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = parsedate_to_datetime(text).timestamp()
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
        seconds = when - (time.time() if now is None else now)
    return max(0.0, seconds) if math.isfinite(seconds) else None  # an upstream's "inf"/"nan" is no hint


def _number(text: str | None, scale: float) -> float | None:
    if text is None:
        return None
    try:
        value = float(text.strip()) * scale
    except ValueError:
        return None
    return max(0.0, value) if math.isfinite(value) else None


def from_headers(
    headers: Mapping[str, str] | None, now: float | None = None, hint: str | None = None
) -> float | None:
    """An upstream reply's retry delay: `retry-after-ms`, else `retry-after`, else the protocol's `hint`
    (a protobuf duration such as Gemini's "12.5s", read from its error body)."""
    low = {k.lower(): v for k, v in headers.items()} if headers else {}
    seconds = _number(low.get("retry-after-ms"), 1e-3)
    if seconds is None and (v := low.get("retry-after")) is not None:
        seconds = parse(v, now)
    if seconds is None and hint is not None and hint.endswith("s"):
        seconds = _number(hint[:-1], 1.0)
    return seconds


def render(seconds: float | None) -> dict[str, str]:
    """The `retry-after` header for one of our error replies: whole seconds, rounded up (never early)."""
    if seconds is None or not math.isfinite(seconds):
        return {}
    return {"retry-after": str(max(0, math.ceil(seconds)))}
