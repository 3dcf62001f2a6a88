"""The ledger writer over real stores: records become rows, batched off the request path, bounded, flushed on stop,
kept and retried while the database is down; retention prunes."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator

import pytest

from smolgate.canonical import Usage
from smolgate.config import LedgerConfig, parse_config
from smolgate.store import Store, UsageRow
from smolgate.store.ledger import LedgerWriter
from smolgate.store.open import open_store
from smolgate.telemetry import RequestRecord
from tests.postgres_server import PostgresServer


def record(i: int, **kw: object) -> RequestRecord:
    rec = RequestRecord(request_id=f"req-{i}", method="POST", path="/v1/chat/completions")
    rec.generation, rec.client_protocol, rec.alias, rec.key_id = True, "openai", "fast", "vk_a"
    for k, v in kw.items():
        setattr(rec, k, v)
    return rec


class Counting:
    """The real store, with its add_usage calls counted (to see the batches)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.calls: list[int] = []
        self.url_display = store.url_display

    async def add_usage(self, rows: list[UsageRow]) -> None:
        self.calls.append(len(rows))
        await self.store.add_usage(rows)

    def __getattr__(self, name: str) -> object:
        return getattr(self.store, name)


async def eventually(check, what: str) -> None:  # type: ignore[no-untyped-def]
    for _ in range(500):
        if await check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"never: {what}")


async def test_a_record_becomes_a_row(store: Store) -> None:
    w = LedgerWriter(store, LedgerConfig(), cost=lambda rec: 0.42)
    rec = record(1, stream=True, ttft_ms=12.5, status=200)
    rec.begin_attempt("up-a", "acct-1", "model-a", "anthropic")
    rec.end_attempt(529, "overloaded")
    rec.begin_attempt("up-b", "acct-2", "model-b", "openai")
    rec.usage = Usage(input_tokens=100, output_tokens=30, cached_tokens=80, cache_creation_tokens=5,
                      reasoning_tokens=10)  # fmt: skip
    rec.finish(200)
    w.finished(rec)
    w.finished(RequestRecord(request_id="models", method="GET", path="/v1/models"))  # not a model call
    local = record(2)
    local.begin_attempt("engine", None, "smolvlm", "local")
    local.finish(200)
    w.finished(local)
    await w.stop()  # never started: stop still writes the buffer
    got, row = await store.recent_usage(), None
    assert [r.request_id for r in got] == ["req-2", "req-1"]
    row = got[1]
    assert (row.provider, row.account, row.upstream_model, row.upstream_protocol) == (
        "up-b", "acct-2", "model-b", "openai",
    )  # fmt: skip
    assert (row.input_tokens, row.output_tokens, row.cached_tokens) == (100, 30, 80)
    assert (row.cache_write_tokens, row.reasoning_tokens, row.attempts) == (5, 10, 2)
    assert (row.cost_usd, row.ttft_ms, row.stream, row.local, row.key_id) == (0.42, 12.5, True, False, "vk_a")
    assert got[0].local and got[0].account is None and got[0].cost_usd == 0.42


async def test_rows_are_written_in_batches_by_the_background_task(store: Store) -> None:
    counting = Counting(store)
    w = LedgerWriter(counting, LedgerConfig(flush_interval=0.05))  # type: ignore[arg-type]
    for i in range(20):  # all before the first tick: one batch
        w.finished(record(i))
    w.start()

    async def all_written() -> bool:
        return len(await store.recent_usage(limit=100)) == 20

    await eventually(all_written, "20 rows written")
    assert counting.calls == [20] and w.written == 20
    w.finished(record(99))
    await eventually(lambda: _has(store, "req-99"), "the next tick writes the next row")
    await w.stop()


async def _has(store: Store, request_id: str) -> bool:
    return any(r.request_id == request_id for r in await store.recent_usage(limit=1000))


async def test_a_full_buffer_drops_counts_and_warns_once(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    w = LedgerWriter(store, LedgerConfig(max_buffer=5))
    with caplog.at_level(logging.WARNING, "smolgate.ledger"):
        for i in range(9):
            w.finished(record(i))
    assert (len(w.buffer), w.dropped) == (5, 4)
    assert len([r for r in caplog.records if "buffer full" in r.message]) == 1
    await w.stop()
    assert sorted(r.request_id for r in await store.recent_usage()) == [f"req-{i}" for i in range(5)]


async def test_stop_flushes_everything_past_one_batch(store: Store) -> None:
    w = LedgerWriter(store, LedgerConfig(flush_interval=60))
    w.start()
    for i in range(5_500):  # more than one batch (5,000 rows)
        w.finished(record(i))
    await w.stop()
    (total,) = await store.usage_totals(0, time.time() + 60)
    assert total.requests == 5_500 and not w.buffer


async def test_a_cost_function_that_fails_costs_zero_and_keeps_the_row(store: Store) -> None:
    w = LedgerWriter(store, LedgerConfig(), cost=lambda rec: 1 / 0)
    w.finished(record(1))
    await w.stop()
    assert [(r.request_id, r.cost_usd) for r in await store.recent_usage()] == [("req-1", 0.0)]


async def test_retention_prunes_by_age(store: Store) -> None:
    now = time.time()
    w = LedgerWriter(store, LedgerConfig(retention_days=1, rollup_retention_days=0))
    for i, age_days in enumerate((3, 2, 0.5, 0)):
        w.finished(record(i, ts=now - age_days * 86400))
    await w.stop()
    assert await w.prune() == 2
    assert sorted(r.request_id for r in await store.recent_usage()) == ["req-2", "req-3"]
    (total,) = await store.usage_totals(now - 4 * 86400, now + 60)
    assert total.requests == 4  # rollups kept (0 = forever)
    keep_all = LedgerWriter(store, LedgerConfig(retention_days=0, rollup_retention_days=0))
    assert await keep_all.prune() == 0


@pytest.fixture
async def outage() -> AsyncIterator[tuple[PostgresServer, Store]]:
    """A PostgreSQL of its own, to take down and bring back."""
    pg = PostgresServer().start()
    store = await open_store(parse_config(f"store: '{pg.create_database()}'\n"))
    yield pg, store
    await store.close()
    pg.stop()


async def test_a_database_outage_keeps_rows_and_retries(
    outage: tuple[PostgresServer, Store], caplog: pytest.LogCaptureFixture
) -> None:
    pg, store = outage
    w = LedgerWriter(store, LedgerConfig(max_buffer=10))
    for i in range(4):
        w.finished(record(i))
    pg.halt()
    with caplog.at_level(logging.INFO, "smolgate.ledger"):
        assert await w.flush() is False
        assert await w.flush() is False
        for i in range(4, 12):  # the buffer stays bounded while down: the oldest rows are kept
            w.finished(record(i))
        assert (len(w.buffer), w.dropped) == (10, 2)
        assert len([r for r in caplog.records if "cannot write" in r.message]) == 1  # logged once
        pg.resume()
        for _ in range(5):  # the pool finds its old connections dead, then reconnects
            if await w.flush():
                break
        else:
            raise AssertionError("never recovered")
    await w.stop()
    assert sorted(int(r.request_id[4:]) for r in await store.recent_usage()) == list(range(10))
    assert any("writable again" in r.message for r in caplog.records)
