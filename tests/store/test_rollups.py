"""Rollups agree with the raw rows they summarise: random traffic over three days, every grouping and series
recomputed from the raw rows in Python, on both backends."""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Callable

import pytest

from smolgate.store import Store, UsageRow
from smolgate.store.schema import DIM_TABLES, DIMENSIONS, MIGRATIONS, ddl
from smolgate.store.sql import SqlStore

T0 = 1_699_920_000.0  # a day boundary (UTC), in the past
SPAN = 3 * 86400


def random_rows(n: int, seed: int) -> list[UsageRow]:
    rnd = random.Random(seed)
    rows = []
    for i in range(n):
        status = rnd.choice([200] * 20 + [400, 429, 500, 502])
        rows.append(
            UsageRow(
                ts=T0 + rnd.random() * SPAN,
                request_id=f"r{i}",
                key_id=rnd.choice(["vk_a", "vk_b", "vk_c", None]),
                client_protocol=rnd.choice(["openai", "anthropic", "gemini"]),
                alias=rnd.choice(["fast", "smart", None]),
                provider=rnd.choice(["oa", "an"]),
                account=rnd.choice(["one", "two", None]),
                upstream_model=rnd.choice(["m1", "m2", "m3"]),
                upstream_protocol="openai",
                input_tokens=rnd.randrange(5000),
                cached_tokens=rnd.randrange(100),
                cache_write_tokens=rnd.randrange(50),
                output_tokens=rnd.randrange(2000),
                reasoning_tokens=rnd.randrange(300),
                cost_usd=round(rnd.random() / 10, 6),
                latency_ms=rnd.random() * 5000,
                ttft_ms=rnd.random() * 500 if rnd.random() < 0.5 else None,
                status=status,
                error_kind="upstream" if status >= 500 or rnd.random() < 0.02 else None,
            )
        )
    return rows


GROUPS: dict[str, Callable[[UsageRow], str | None]] = {
    "key": lambda r: r.key_id,
    "model": lambda r: r.upstream_model,
    "alias": lambda r: r.alias,
    "account": lambda r: f"{r.provider}/{r.account or ''}",
    "provider": lambda r: r.provider,
    "status": lambda r: f"{r.status // 100}xx",
}


def expected(rows: list[UsageRow]) -> tuple[int, int, int, int, float, float, float, int]:
    return (
        len(rows),
        sum(r.status >= 400 or r.error_kind is not None for r in rows),
        sum(r.input_tokens for r in rows),
        sum(r.output_tokens + r.cached_tokens + r.cache_write_tokens + r.reasoning_tokens for r in rows),
        round(sum(r.cost_usd for r in rows), 6),
        round(sum(r.latency_ms for r in rows), 3),
        round(sum(r.ttft_ms or 0 for r in rows), 3),
        sum(r.ttft_ms is not None for r in rows),
    )


def got(b: object) -> tuple[int, int, int, int, float, float, float, int]:
    return (
        b.requests,  # type: ignore[attr-defined]
        b.errors,  # type: ignore[attr-defined]
        b.input_tokens,  # type: ignore[attr-defined]
        b.output_tokens + b.cached_tokens + b.cache_write_tokens + b.reasoning_tokens,  # type: ignore[attr-defined]
        round(b.cost_usd, 6),  # type: ignore[attr-defined]
        round(b.latency_ms_sum, 3),  # type: ignore[attr-defined]
        round(b.ttft_ms_sum, 3),  # type: ignore[attr-defined]
        b.ttft_count,  # type: ignore[attr-defined]
    )


@pytest.fixture
async def loaded(store: Store) -> tuple[Store, list[UsageRow]]:
    rows = random_rows(3000, seed=17)
    for i in range(0, len(rows), 700):  # several batches: the upserts add to existing rollup rows
        await store.add_usage(rows[i : i + 700])
    return store, rows


# ranges: minute-aligned, cutting hours in the middle (hour + minute rollups), inside one hour, everything
RANGES = [
    (T0 + 37 * 60, T0 + 50 * 3600 + 11 * 60),
    (T0 + 3 * 3600 + 60, T0 + 3 * 3600 + 1500),
    (T0, T0 + SPAN),
]


async def test_totals_by_every_group_agree_with_raw_rows(loaded: tuple[Store, list[UsageRow]]) -> None:
    for since, until in RANGES:
        await _check_totals(*loaded, since, until)


async def _check_totals(store: Store, rows: list[UsageRow], since: float, until: float) -> None:
    inside = [r for r in rows if since <= r.ts < until]
    (total,) = await store.usage_totals(since, until)
    assert got(total) == expected(inside)
    for by, group_of in GROUPS.items():
        groups: dict[str | None, list[UsageRow]] = defaultdict(list)
        for r in inside:
            groups[group_of(r)].append(r)
        buckets = await store.usage_totals(since, until, by=by, limit=1000)  # type: ignore[arg-type]
        assert {b.group: got(b) for b in buckets} == {g: expected(rs) for g, rs in groups.items()}, by
        costs = [b.cost_usd for b in buckets]
        assert costs == sorted(costs, reverse=True)


async def test_series_agree_with_raw_rows(loaded: tuple[Store, list[UsageRow]]) -> None:
    for step in (60, 3600, 4 * 3600, 86400):
        for key_id in (None, "vk_b"):
            await _check_series(*loaded, step, key_id)


async def _check_series(store: Store, rows: list[UsageRow], step: int, key_id: str | None) -> None:
    since, until = T0 + 86400, T0 + 2 * 86400  # aligned to every step
    buckets: dict[float, list[UsageRow]] = defaultdict(list)
    for r in rows:
        if since <= r.ts < until and (key_id is None or r.key_id == key_id):
            buckets[r.ts // step * step].append(r)
    series = await store.usage_series(since, until, step=step, key_id=key_id)
    assert [b.bucket for b in series] == sorted(buckets)
    assert {b.bucket: got(b) for b in series} == {t: expected(rs) for t, rs in buckets.items()}


async def test_key_spend_agrees_with_raw_rows(loaded: tuple[Store, list[UsageRow]]) -> None:
    store, rows = loaded
    for since in (T0, T0 + 86400 + 17 * 60, T0 + 2 * 86400 + 3600):
        spent = sum(r.cost_usd for r in rows if r.key_id == "vk_a" and r.ts >= since)
        assert await store.key_spend("vk_a", since) == pytest.approx(spent)


async def test_migration_9_fills_the_dimension_rollups_as_the_writers_fold_them(
    loaded: tuple[Store, list[UsageRow]],
) -> None:
    """A store that held rows before the per-dimension rollups existed gets them from its combination rollups
    (schema.DIMENSIONS in SQL); they must equal what the writers fold in Python (rollup.dim_values)."""
    store, _ = loaded
    assert isinstance(store, SqlStore)
    for table in DIM_TABLES.values():
        folded = await _table(store, table)
        assert {r[1] for r in folded} == set(DIMENSIONS)
        await store._execute(f"DELETE FROM {table}")
        for statement in MIGRATIONS[8]:
            if statement.startswith(f"INSERT INTO {table} "):
                await store._execute(ddl(statement, store.dialect))
        assert await _table(store, table) == folded


async def _table(store: SqlStore, table: str) -> list[tuple[object, ...]]:
    rows = await store._fetch(f"SELECT * FROM {table}")
    return sorted(tuple(round(v, 6) if isinstance(v, float) else v for v in r) for r in rows)
