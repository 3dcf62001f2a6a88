"""Per-account health: 429 cooldowns, a circuit breaker for 5xx/timeouts, disable-on-401/403.

One small state machine, evaluated lazily at pick time (no timers per account):

    healthy ──429──▶ cooling(until) ──time──▶ healthy
    healthy ──N consecutive failures──▶ open(until) ──time──▶ half_open ──probe ok──▶ healthy
                                                                  └──probe fails──▶ open(until)
    any ──401/403──▶ disabled (stays until the key is fixed: a new config)

The Redis backend (state_redis.py) implements the same transitions in Lua so replicas agree; the tests run the
same scenarios against both.
"""

from __future__ import annotations

import enum
import random
from dataclasses import dataclass

from ..errors import ErrorKind

HEALTHY, COOLING, OPEN, HALF_OPEN, DISABLED = "healthy", "cooling", "open", "half_open", "disabled"


class Outcome(enum.Enum):
    OK = "ok"  # the upstream answered and is fine
    NEUTRAL = "neutral"  # the upstream answered; the request was the client's fault (400, 404, 413 …)
    RATE_LIMITED = "rate_limited"
    FAILURE = "failure"  # 5xx, timeouts, connect errors, resets: counts toward the breaker
    AUTH = "auth"  # our key was rejected: disable the account


_ERROR_OUTCOME = {
    ErrorKind.RATE_LIMITED: Outcome.RATE_LIMITED,
    ErrorKind.OVERLOADED: Outcome.FAILURE,
    ErrorKind.UPSTREAM: Outcome.FAILURE,
    ErrorKind.TIMEOUT: Outcome.FAILURE,
    ErrorKind.INTERNAL: Outcome.FAILURE,
    ErrorKind.AUTH: Outcome.AUTH,
    ErrorKind.PERMISSION: Outcome.AUTH,
}


def classify(status: int | None, error: ErrorKind | None) -> Outcome:
    if status is not None:
        if status < 400:
            return Outcome.OK
        if status == 429:
            return Outcome.RATE_LIMITED
        if status in (401, 403):
            return Outcome.AUTH
        if status >= 500 or status == 408:
            return Outcome.FAILURE
        return Outcome.NEUTRAL
    if error is not None:
        return _ERROR_OUTCOME.get(error, Outcome.NEUTRAL)
    return Outcome.OK


def backoff(level: int, base: float, cap: float) -> float:
    """Exponential backoff with jitter for a 429 that did not say when to come back.

    The jitter (50–100 % of the step) keeps replicas that were throttled together from returning together.
    """
    return min(cap, base * (2.0 ** min(level, 30))) * random.uniform(0.5, 1.0)


class Gate(enum.Enum):
    OPEN_FOR_TRAFFIC = 0
    PROBE = 1  # the breaker is half-open: exactly one request may test the account
    BLOCKED = 2


@dataclass(slots=True)
class Health:
    state: str = HEALTHY
    until: float = 0.0  # epoch seconds: end of a cooldown, or when an open breaker may probe
    reason: str | None = None
    failures: int = 0  # consecutive breaker failures
    level: int = 0  # consecutive 429s without a success, for the backoff exponent
    probing: bool = False  # a half-open probe is in flight (in this process)

    def gate(self, now: float) -> Gate:
        """Can a request go to this account now? Advances time-based transitions as a side effect."""
        s = self.state
        if s == HEALTHY:
            return Gate.OPEN_FOR_TRAFFIC
        if s == COOLING:
            if now < self.until:
                return Gate.BLOCKED
            self.state, self.until = HEALTHY, 0.0
            return Gate.OPEN_FOR_TRAFFIC
        if s == OPEN:
            if now < self.until:
                return Gate.BLOCKED
            self.state, self.probing = HALF_OPEN, False
        if s in (OPEN, HALF_OPEN):
            return Gate.BLOCKED if self.probing else Gate.PROBE
        return Gate.BLOCKED  # disabled

    def recovery_at(self) -> float | None:
        """When this account may take traffic again without anyone fixing anything (None: never / now)."""
        if self.state in (COOLING, OPEN):
            return self.until
        return None

    def on_success(self, *, reset_backoff: bool = True) -> bool:
        """Returns True if the account became usable again (wake waiters)."""
        self.failures = 0
        if reset_backoff and self.state != COOLING:  # an old in-flight success says nothing about the 429
            self.level = 0
        if self.state in (OPEN, HALF_OPEN):
            self.state, self.until, self.reason, self.probing = HEALTHY, 0.0, None, False
            return True
        return False

    def on_rate_limited(self, until: float, reason: str) -> None:
        if self.state == DISABLED:
            return
        # A later 429 can only extend a cooldown: two in-flight requests that both 429 keep the longer wait.
        self.until = max(until, self.until) if self.state == COOLING else until
        self.state, self.reason, self.probing = COOLING, reason, False
        self.level += 1

    def on_failure(self, now: float, threshold: int, cooldown: float, reason: str) -> bool:
        """Count a failure; returns True if this opened the breaker."""
        if self.state == DISABLED:
            return False
        self.failures += 1
        if self.state == HALF_OPEN or self.failures >= threshold:
            self.state, self.until, self.reason, self.probing = OPEN, now + cooldown, reason, False
            return True
        return False

    def on_auth(self, reason: str) -> None:
        self.state, self.until, self.reason, self.probing = DISABLED, 0.0, reason, False

    def mirror(self, state: str, until: float, reason: str | None) -> None:
        """Adopt a state another replica wrote to the shared store."""
        if state == self.state and until == self.until:
            return
        self.state, self.until, self.reason = state, until, reason
        self.probing = state == HALF_OPEN  # half-open over there means another replica holds the probe
