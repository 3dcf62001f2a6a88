"""Latency and TTFT percentiles from the rollups' histograms, on both backends: per minute, per hour and over a
span read from the daily rollup, with rows written in two batches (so histogram buckets are merged by the
upserts, NULLs and all). Every expected value is worked out by hand from the bucket edges (histogram.py): a
percentile is the rank q·n found in its doubling bucket [lo, 2·lo) and interpolated linearly."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from smolgate.store import Store, UsageRow
from smolgate.store.schema import MIGRATIONS, SCHEMA_VERSION, ddl
from smolgate.store.sqlite import SqliteStore
from smolgate.usage_query import derived

T0 = 1_699_920_000.0  # a UTC day boundary, in the past


def row(n: int, ts: float, key: str, latency: float, ttft: float | None) -> UsageRow:
    return UsageRow(
        ts=ts, request_id=f"p{n}", key_id=key, client_protocol="openai", alias="fast", provider="up",
        account="a", upstream_model="m", upstream_protocol="openai", latency_ms=latency, ttft_ms=ttft,
    )  # fmt: skip


FIRST = [row(1, T0 + 10, "vk_a", 100.0, 20.0), row(2, T0 + 30, "vk_b", 0.5, 0.25)]
SECOND = [row(3, T0 + 70, "vk_a", 300.0, None), row(4, T0 + 3605, "vk_a", 5000.0, 700.0)]


def figures(b: object) -> tuple[float | None, ...]:
    d = derived(b)  # type: ignore[arg-type]
    return tuple(d[k] for k in ("latency_p50_ms", "latency_p99_ms", "ttft_p50_ms", "ttft_p99_ms"))


@pytest.fixture
async def filled(store: Store) -> Store:
    await store.add_usage(FIRST)
    await store.add_usage(SECOND)
    return store


async def test_hourly_series(filled: Store):
    first, second = await filled.usage_series(T0, T0 + 7200, step=3600)
    # hour 1: latencies 0.5 [0,1), 100 [64,128), 300 [256,512); p50 = rank 1.5, the 2nd bucket's half;
    # p99 = rank 2.97, 0.97 into [256, 512). TTFTs 0.25 [0,1) and 20 [16,32): rank 1 tops [0,1); rank 1.98
    assert figures(first) == pytest.approx((96.0, 256 + 256 * 0.97, 1.0, 16 + 16 * 0.98))
    # hour 2: one latency 5000 in [4096, 8192), one TTFT 700 in [512, 1024)
    assert figures(second) == pytest.approx((6144.0, 4096 + 4096 * 0.99, 768.0, 512 + 512 * 0.99))


async def test_minute_series_of_a_key(filled: Store):
    buckets = await filled.usage_series(T0, T0 + 120, step=60, key_id="vk_a")
    assert [(b.bucket, figures(b)) for b in buckets] == [
        (T0, pytest.approx((96.0, 64 + 64 * 0.99, 24.0, 16 + 16 * 0.99))),
        (T0 + 60, (384.0, pytest.approx(256 + 256 * 0.99), None, None)),  # no TTFT that minute: None
    ]


async def test_totals_per_key_from_the_daily_rollup(filled: Store):
    groups = {b.group: b for b in await filled.usage_totals(T0, T0 + 2 * 86400, by="key", percentiles=True)}
    # vk_a: 100, 300, 5000 → [64,128), [256,512), [4096,8192); TTFTs 20 and 700
    assert figures(groups["vk_a"]) == pytest.approx((384.0, 4096 + 4096 * 0.97, 32.0, 512 + 512 * 0.98))
    assert figures(groups["vk_b"]) == pytest.approx((0.5, 0.99, 0.5, 0.99))
    (empty,) = await filled.usage_totals(T0 - 86400, T0, percentiles=True)
    assert figures(empty) == (None, None, None, None)
    (plain,) = await filled.usage_totals(T0, T0 + 86400)  # histograms not read: no percentiles, same sums
    assert figures(plain) == (None, None, None, None) and plain.requests == 4 and plain.latency_hist == ()


async def test_rollups_written_before_the_histograms_keep_adding_up(tmp_path: Path) -> None:
    """A store from before migration 4: its rollup rows get empty histograms, and new rows in the same buckets
    add to both their sums and their (new) histograms."""
    path = tmp_path / "old.db"
    db = sqlite3.connect(path, isolation_level=None)
    db.execute(ddl(SCHEMA_VERSION, "sqlite"))
    for version, statements in enumerate(MIGRATIONS[:3], 1):
        for statement in statements:
            db.execute(ddl(statement, "sqlite"))
        db.execute("INSERT INTO schema_version VALUES (?, ?)", (version, 0.0))
    for table, bucket in (("usage_minute", T0), ("usage_hour", T0), ("usage_day", T0)):
        db.execute(
            f"INSERT INTO {table} VALUES (?, 'vk_a', 'fast', 'up', 'a', 'm', 2, 5, 0, 0, 0, 0, 0, 0, 0.0, 500.0,"
            " 0.0, 0)",
            (int(bucket),),
        )
    db.close()
    store = SqliteStore(path)
    await store.open()
    try:
        await store.add_usage([row(9, T0 + 5, "vk_a", 100.0, None)])
        (total,) = await store.usage_totals(T0, T0 + 86400, percentiles=True)
        assert total.requests == 6 and total.latency_ms_sum == 600.0
        assert sum(total.latency_hist) == 1 and figures(total)[0] == 96.0  # the new row's bucket alone
        (minute,) = await store.usage_series(T0, T0 + 60, step=60)
        assert minute.requests == 6 and sum(minute.latency_hist) == 1
    finally:
        await store.close()
