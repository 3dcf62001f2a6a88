"""In-process account state: the pool's own view of each account, cheap enough for every request.

Rate windows are bucketed (13 buckets of 5 s): O(1) memory per account, O(13) per check, and the same shape
as the Redis keys so both backends count alike. The window spans 60–65 s, so it never admits more than the
limit in *any* 60 s interval (a bucket leaves only after it is fully older than a minute).
"""

from __future__ import annotations

import collections
import time
from dataclasses import dataclass, field

from ..config import AccountConfig
from .health import Health
from .ratelimit_headers import RateInfo

BUCKET = 5.0
NBUCKETS = 13  # 12 full minutes' worth of buckets + the current one
INF = float("inf")


class Window:
    """A sliding per-minute counter (requests or tokens) with a running sum: O(1) amortised per call."""

    __slots__ = ("cnt", "head", "sum")

    def __init__(self) -> None:
        self.cnt = [0] * NBUCKETS
        self.head = -NBUCKETS  # index of the newest bucket (absolute: now // BUCKET)
        self.sum = 0

    def _advance(self, now: float) -> int:
        b = int(now // BUCKET)
        if b > self.head:  # buckets that slid out of the window leave the sum
            if b - self.head >= NBUCKETS:
                self.cnt = [0] * NBUCKETS
                self.sum = 0
            else:
                cnt = self.cnt
                for k in range(self.head + 1, b + 1):
                    s = k % NBUCKETS
                    self.sum -= cnt[s]
                    cnt[s] = 0
            self.head = b
        return self.head

    def total(self, now: float) -> int:
        self._advance(now)
        return self.sum

    def add(self, now: float, amount: int) -> None:
        b = self._advance(now)
        self.cnt[b % NBUCKETS] += amount
        self.sum += amount

    def frees_at(self, now: float) -> float:
        """When the oldest counted bucket leaves the window (capacity returns)."""
        b = self._advance(now)
        for k in range(b - NBUCKETS + 1, b + 1):
            if self.cnt[k % NBUCKETS] > 0:
                return (k + NBUCKETS) * BUCKET
        return now


@dataclass(slots=True, eq=False)
class AccountState:
    cfg: AccountConfig
    name: str
    index: int
    key_fp: str  # short hash of the key: lets a shared "disabled" mark die when the key is replaced
    in_flight: int = 0
    health: Health = field(default_factory=Health)
    req: Window | None = None
    tok: Window | None = None
    # Budget announced by the upstream's headers, decremented locally by each request we send since.
    est_req: int | None = None
    est_tok: int | None = None
    rl: RateInfo = field(default_factory=RateInfo)
    errors: collections.deque[str] = field(default_factory=lambda: collections.deque(maxlen=8))
    in_flight_all: int | None = None  # across replicas (shared state), as of the last refresh
    swrr: float = 0.0  # smooth weighted round robin's running "current weight"

    def __post_init__(self) -> None:
        if self.cfg.rpm:
            self.req = Window()
        if self.cfg.tpm:
            self.tok = Window()

    def capped(self, now: float, tokens: int) -> float | None:
        """None if this account has room for one more request now; else when room may return
        (epoch seconds; INF = when an in-flight request is released)."""
        c = self.cfg
        if c.max_concurrency is not None and self.in_flight >= c.max_concurrency:
            return INF
        if self.req is not None and c.rpm is not None and self.req.total(now) >= c.rpm:
            return self.req.frees_at(now)
        if self.tok is not None and c.tpm:
            used = self.tok.total(now)
            # A request bigger than the whole budget may still go when the window is empty, or it never would.
            if used and used + tokens > c.tpm:
                return self.tok.frees_at(now)
        # The upstream told us its budget is spent: don't send what would surely 429.
        rl = self.rl
        if self.est_req is not None and self.est_req <= 0 and rl.reset_requests and rl.reset_requests > now:
            return rl.reset_requests
        if self.est_tok is not None and self.est_tok <= 0 and rl.reset_tokens and rl.reset_tokens > now:
            return rl.reset_tokens
        return None

    def take(self, now: float, tokens: int) -> None:
        self.in_flight += 1
        if self.req is not None:
            self.req.add(now, 1)
        if self.tok is not None and tokens:
            self.tok.add(now, tokens)
        if self.est_req is not None:
            self.est_req -= 1
        if self.est_tok is not None and tokens:
            self.est_tok -= tokens

    def observe(self, info: RateInfo) -> None:
        """Adopt the budget a response announced. Requests still in flight were probably not yet counted by
        the upstream when it answered, so they are subtracted (err on the side of not 429ing)."""
        others = max(0, self.in_flight - 1)
        if info.remaining_requests is not None:
            self.est_req = info.remaining_requests - others
        if info.remaining_tokens is not None:
            self.est_tok = info.remaining_tokens
        merged = self.rl
        for f in (
            "remaining_requests",
            "remaining_tokens",
            "limit_requests",
            "limit_tokens",
            "reset_requests",
            "reset_tokens",
        ):
            v = getattr(info, f)
            if v is not None:
                setattr(merged, f, v)

    def headroom(self, now: float) -> float:
        """Requests/second this account can still take before its announced budget resets (INF: unknown).

        An account with 3 requests left for the next 30 s scores 0.1; one with 500 left scores far higher, so
        the rate-limit-aware strategy drains the roomy account and lets the tight one refill.
        """
        score = INF
        rl = self.rl
        if self.est_req is not None and rl.reset_requests and rl.reset_requests > now:
            score = max(0, self.est_req) / max(rl.reset_requests - now, 0.05)
        if self.est_tok is not None and rl.reset_tokens and rl.reset_tokens > now:
            # Normalise tokens to "requests" using the limit ratio when known, else treat 1k tokens ≈ 1 request.
            per_req = (
                (rl.limit_tokens / rl.limit_requests) if rl.limit_tokens and rl.limit_requests else 1000.0
            )
            score = min(score, max(0, self.est_tok) / per_req / max(rl.reset_tokens - now, 0.05))
        if score == INF and self.req is not None and self.cfg.rpm:
            score = max(0, self.cfg.rpm - self.req.total(now)) / 60.0
        return score

    def note(self, text: str) -> None:
        self.errors.append(f"{time.strftime('%H:%M:%S', time.gmtime())} {text}")
