"""Latency and time-to-first-token histograms kept in each rollup row, and percentiles read back from them.

Fixed buckets doubling from 1 ms: [0, 1), [1, 2), [2, 4), … [2^19, 2^20) ms and [2^20 ms, ∞) — 22 counts from
sub-millisecond answers to 17½-minute generations. Fixed edges make histograms of different rows, replicas and
rollup levels add up column by column (the upserts and SUM() merge them like the other sums); doubling keeps the
column count low, which the dashboards' SUMs over tens of thousands of rollup rows pay for (finer buckets cost a
column each). A percentile is interpolated linearly inside its bucket, as Prometheus' histogram_quantile does:
exact when the values inside a bucket are spread evenly, and never outside the bucket (at worst half its width
off, i.e. within ±33 % of the true value). The open last bucket reads as its lower edge.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

BUCKETS = 22
TOP = BUCKETS - 1  # the open bucket: 2^20 ms and above
LATENCY_COLS = tuple(f"lat_b{i:02d}" for i in range(BUCKETS))
TTFT_COLS = tuple(f"ttft_b{i:02d}" for i in range(BUCKETS))


def bucket_of(ms: float) -> int:
    """The bucket of a duration: 0 below 1 ms, then 1 + floor(log2(ms)), capped at the open bucket."""
    if ms < 1.0:  # (NaN too: a tamed row has none, but a histogram must never raise)
        return 0
    if ms >= 1048576.0:  # 2^20 ms, and infinity (whose frexp exponent is 0)
        return TOP
    return min(math.frexp(ms)[1], TOP)  # frexp: ms = m·2^e with 0.5 ≤ m < 1, so e = floor(log2(ms)) + 1


def edges(i: int) -> tuple[float, float]:
    """Bucket i's [low, high) in ms (high is infinite for the open bucket)."""
    if i == 0:
        return 0.0, 1.0
    return float(2 ** (i - 1)), (math.inf if i == TOP else float(2**i))


def percentile(counts: Sequence[int], q: float) -> float | None:
    """The q-quantile (0 < q ≤ 1) of the values counted, interpolated within its bucket; None when empty."""
    total = sum(counts)
    if total <= 0:
        return None
    rank, below = q * total, 0
    for i, n in enumerate(counts):
        if n and below + n >= rank:
            lo, hi = edges(i)
            if math.isinf(hi):
                return lo
            return lo + (hi - lo) * (rank - below) / n
        below += n
    return edges(TOP)[0]  # (not reached: the last non-empty bucket holds rank ≤ total)
