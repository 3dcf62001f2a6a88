"""Account selection strategies. Each picks one account from the candidates that have room right now.

Candidates are already filtered (enabled, healthy or probing, not excluded, under their caps), so a strategy
only orders them; every pick is O(len(candidates)) with no allocation beyond the loop.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from .state_memory import AccountState

Pick = Callable[[Sequence[AccountState], float], AccountState]


class RoundRobin:
    """Next account after the last one picked, in configuration order (skipping non-candidates)."""

    def __init__(self, n: int) -> None:
        self.n = max(1, n)
        self.last = -1

    def _after_last(self, a: AccountState) -> int:
        return (a.index - self.last - 1) % self.n

    def __call__(self, cands: Sequence[AccountState], now: float) -> AccountState:
        best = min(cands, key=self._after_last)
        self.last = best.index
        return best


class Weighted:
    """Smooth weighted round robin (nginx): deterministic and evenly interleaved — weights 3:1 give
    a a b a a a b a …, never long runs — so the observed split matches the weights within a few picks.
    Weight 0 means standby: picked only when no weighted account has room."""

    def __init__(self, n: int) -> None:
        self.rr = RoundRobin(n)

    def __call__(self, cands: Sequence[AccountState], now: float) -> AccountState:
        total = 0.0
        best: AccountState | None = None
        for a in cands:
            w = a.cfg.weight
            if w <= 0:
                continue
            a.swrr += w
            total += w
            if best is None or a.swrr > best.swrr:
                best = a
        if best is None:
            return self.rr(cands, now)
        best.swrr -= total
        return best


class LeastInFlight:
    """Fewest requests in flight (in this process); ties rotate so idle accounts share evenly."""

    def __init__(self, n: int) -> None:
        self.rr = RoundRobin(n)

    def __call__(self, cands: Sequence[AccountState], now: float) -> AccountState:
        low = min(a.in_flight for a in cands)
        return self.rr([a for a in cands if a.in_flight == low], now)


class RateLimitAware:
    """Most headroom first: the account whose announced budget (remaining ÷ time to reset) is largest.

    Accounts that never sent rate-limit headers count as unlimited. Near-equal headroom (within 10 %) is a tie,
    broken by fewest in flight, then rotation — so a pool of fresh accounts spreads like least-in-flight, and
    an account whose headers count down toward zero stops being picked long before it would 429.
    """

    def __init__(self, n: int) -> None:
        self.rr = RoundRobin(n)

    def __call__(self, cands: Sequence[AccountState], now: float) -> AccountState:
        scores = [a.headroom(now) for a in cands]
        top = max(scores)
        near = [a for a, s in zip(cands, scores, strict=True) if s >= top * 0.9]
        low = min(a.in_flight for a in near)
        return self.rr([a for a in near if a.in_flight == low], now)


def make(strategy: str, n: int) -> Pick:
    if strategy == "weighted":
        return Weighted(n)
    if strategy == "least_in_flight":
        return LeastInFlight(n)
    if strategy == "rate_limit_aware":
        return RateLimitAware(n)
    return RoundRobin(n)
