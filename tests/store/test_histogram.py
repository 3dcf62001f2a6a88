"""The rollups' duration histograms: which bucket a duration falls in, and percentiles read back from counts,
checked against values worked out by hand from the bucket edges (histogram.py's docstring)."""

from __future__ import annotations

import math

import pytest

from smolgate.store.histogram import BUCKETS, TOP, bucket_of, edges, percentile


def test_buckets_double_from_one_millisecond():
    assert [bucket_of(ms) for ms in (0.0, 0.3, 0.999)] == [0, 0, 0]
    assert [bucket_of(ms) for ms in (1.0, 1.99, 2.0, 3.9, 4.0, 100.0, 1023.9, 1024.0)] == [
        1,
        1,
        2,
        2,
        3,
        7,
        10,
        11,
    ]
    assert bucket_of(2.0**19) == 20 and bucket_of(2.0**20 - 0.001) == 20
    assert [bucket_of(ms) for ms in (2.0**20, 3_600_000.0, math.inf, -5.0, math.nan)] == [TOP, TOP, TOP, 0, 0]
    for ms in (0.5, 1.5, 7.0, 700.0, 70_000.0):  # each value inside its bucket's edges
        lo, hi = edges(bucket_of(ms))
        assert lo <= ms < hi
    assert BUCKETS == 22 and edges(0) == (0.0, 1.0) and edges(TOP) == (2.0**20, math.inf)


def counts(**at: int) -> list[int]:
    c = [0] * BUCKETS
    for name, n in at.items():
        c[int(name[1:])] = n
    return c


def test_percentiles_interpolate_inside_the_bucket():
    assert percentile([0] * BUCKETS, 0.5) is None and percentile((), 0.99) is None
    # one value in [64, 128): every quantile is a point of that bucket, rank q·1 of its one value
    assert percentile(counts(b7=1), 0.5) == 96.0 and percentile(counts(b7=1), 0.99) == pytest.approx(127.36)
    # 100 values: 50 in [1, 2), 40 in [256, 512), 10 in [1024, 2048)
    c = counts(b1=50, b9=40, b11=10)
    assert percentile(c, 0.5) == 2.0  # rank 50: the top of the first bucket
    assert percentile(c, 0.7) == 256 + 256 * 20 / 40  # rank 70: the 20th of 40 in [256, 512)
    assert percentile(c, 0.99) == 1024 + 1024 * 9 / 10  # rank 99: the 9th of 10 in [1024, 2048)
    assert percentile(counts(b0=4), 0.5) == 0.5  # below 1 ms: from 0
    assert percentile(counts(b3=1, b21=3), 0.99) == 2.0**20  # the open bucket: its lower edge
