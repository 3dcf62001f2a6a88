"""Parse upstream rate-limit headers into one shape the pool can reason about.

Providers announce their remaining budget on *every* response (2xx included), which is what lets the
rate-limit-aware strategy steer away from an account before it 429s. Formats handled:

- OpenAI-style: `x-ratelimit-{limit,remaining}-{requests,tokens}`, `x-ratelimit-reset-{requests,tokens}` as Go
  durations ("1s", "6m0s", "20ms", "1h2m3.5s") or bare seconds.
- Anthropic: `anthropic-ratelimit-{requests,tokens,input-tokens,output-tokens}-{limit,remaining,reset}` with
  RFC 3339 reset instants.
- `retry-after` (seconds or an HTTP date) and `retry-after-ms`, read by `smolgate.retry_after`.

All reset times are returned as absolute epoch seconds so they can be shared across replicas.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from .. import retry_after

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|us|µs|ns|h|m|s)")
_UNIT = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}
_PREFIXES = ("x-ratelimit-", "anthropic-ratelimit-", "retry-after")


@dataclass(slots=True)
class RateInfo:
    """What one response said about the account's budget. None = the header was absent or unparseable."""

    remaining_requests: int | None = None
    remaining_tokens: int | None = None
    limit_requests: int | None = None
    limit_tokens: int | None = None
    reset_requests: float | None = None  # epoch seconds
    reset_tokens: float | None = None  # epoch seconds
    retry_after: float | None = None  # seconds from now

    @property
    def empty(self) -> bool:
        return self.remaining_requests is None and self.remaining_tokens is None and self.retry_after is None

    def exhausted_until(self, now: float) -> float | None:
        """If a budget is at zero, the epoch second it refills (the soonest known), else None."""
        ends = []
        if self.remaining_requests is not None and self.remaining_requests <= 0 and self.reset_requests:
            ends.append(self.reset_requests)
        if self.remaining_tokens is not None and self.remaining_tokens <= 0 and self.reset_tokens:
            ends.append(self.reset_tokens)
        ends = [e for e in ends if e > now]
        return max(ends) if ends else None


_SIMPLE = re.compile(r"(\d+(?:\.\d+)?)(ms|s)?")


def parse_duration(text: str) -> float | None:
    """Go-style duration ("6m0s", "20ms", "1h2m3.5s") or bare seconds ("30", "0.5") → seconds."""
    text = text.strip()
    if (m := _SIMPLE.fullmatch(text)) is not None:  # the common forms, without exceptions or a loop
        return float(m.group(1)) * (1e-3 if m.group(2) == "ms" else 1.0)
    pos, total = 0, 0.0
    for m in _DURATION.finditer(text):
        if m.start() != pos:
            return None
        total += float(m.group(1)) * _UNIT[m.group(2)]
        pos = m.end()
    return total if pos == len(text) and pos > 0 else None


def parse_reset(text: str, now: float) -> float | None:
    """A reset header as an absolute epoch: RFC 3339 instant, Go duration, seconds, or an epoch number."""
    text = text.strip()
    if "T" in text and "-" in text:  # RFC 3339 (anthropic)
        try:
            return datetime.fromisoformat(text).timestamp()  # 3.11+ accepts a trailing Z
        except ValueError:
            return None
    d = parse_duration(text)
    if d is None:
        return None
    return d if d > 1e9 else now + d  # some servers send an epoch timestamp instead of a delta


def _int(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        return int(float(text))
    except (ValueError, OverflowError):  # not a number, or "inf"/"nan" from an upstream
        return None


def _min(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else min(a, b)


def parse(headers: Mapping[str, str] | None, now: float) -> RateInfo:
    info = RateInfo()
    if not headers:
        return info
    # Case-insensitive view of only the headers we care about (aiohttp gives a CIMultiDict, tests give dicts).
    h = {lk: v for k, v in headers.items() if (lk := k.lower()).startswith(_PREFIXES)}
    if not h:
        return info
    info.retry_after = retry_after.from_headers(h, now)

    info.remaining_requests = _int(h.get("x-ratelimit-remaining-requests"))
    info.remaining_tokens = _int(h.get("x-ratelimit-remaining-tokens"))
    info.limit_requests = _int(h.get("x-ratelimit-limit-requests"))
    info.limit_tokens = _int(h.get("x-ratelimit-limit-tokens"))
    if (v := h.get("x-ratelimit-reset-requests")) is not None:
        info.reset_requests = parse_reset(v, now)
    if (v := h.get("x-ratelimit-reset-tokens")) is not None:
        info.reset_tokens = parse_reset(v, now)

    a = "anthropic-ratelimit-"
    if any(k.startswith(a) for k in h):
        info.remaining_requests = _min(info.remaining_requests, _int(h.get(a + "requests-remaining")))
        info.limit_requests = info.limit_requests or _int(h.get(a + "requests-limit"))
        if (v := h.get(a + "requests-reset")) is not None:
            info.reset_requests = parse_reset(v, now)
        # Tokens: the tightest of the combined, input and output budgets is the one that will bite first.
        for kind in ("tokens", "input-tokens", "output-tokens"):
            rem = _int(h.get(f"{a}{kind}-remaining"))
            if rem is not None and (info.remaining_tokens is None or rem < info.remaining_tokens):
                info.remaining_tokens = rem
                info.limit_tokens = _int(h.get(f"{a}{kind}-limit"))
                if (v := h.get(f"{a}{kind}-reset")) is not None:
                    info.reset_tokens = parse_reset(v, now)
    return info
