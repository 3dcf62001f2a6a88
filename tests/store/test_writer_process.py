"""The SQLite ledger's writer process: batches written by the child, which survives the signals a service manager
sends the whole group, is started again when it dies (its batch retried, nothing lost), and exits once the
gateway's side closes after the last flush."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from smolgate.config import LedgerConfig
from smolgate.store.ledger import LedgerWriter
from smolgate.store.sqlite import SqliteStore
from smolgate.store.writer_process import WriterProcess
from tests.store.test_ledger import record


@pytest.fixture
async def sqlite_store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    s = SqliteStore(tmp_path / "ledger.db")
    await s.open()
    yield s
    await s.close()


async def written(store: SqliteStore) -> set[str]:
    return {r.request_id for r in await store.recent_usage(limit=1000)}


async def test_batches_go_through_the_child(sqlite_store: SqliteStore) -> None:
    w = LedgerWriter(sqlite_store, LedgerConfig())
    sink = w.sink
    assert isinstance(sink, WriterProcess)
    for i in range(3):
        w.finished(record(i, latency_ms=150.0))
    assert await w.flush() and w.written == 3
    child = await sink.start()
    assert child.pid != os.getpid() and await written(sqlite_store) == {"req-0", "req-1", "req-2"}
    (total,) = await sqlite_store.usage_totals(0, 2e9, percentiles=True)
    assert total.requests == 3 and total.latency_hist[8] == 3  # rollups folded by the child: [128, 256) ms
    await w.stop()
    assert child.returncode == 0  # stdin closed: it wrote what it had and exited


async def test_the_child_ignores_group_signals_and_is_restarted_when_it_dies(
    sqlite_store: SqliteStore,
) -> None:
    w = LedgerWriter(sqlite_store, LedgerConfig())
    sink = w.sink
    assert isinstance(sink, WriterProcess)
    child = await sink.start()
    child.send_signal(signal.SIGTERM)  # as systemd's KillMode=control-group, or Ctrl-C's SIGINT
    child.send_signal(signal.SIGINT)
    w.finished(record(1))
    assert await w.flush() and sink.started == 1 and child.returncode is None
    child.kill()
    await child.wait()
    w.finished(record(2))
    for _ in range(3):  # the dead child's batch fails (kept in the buffer) or a new child is started at once
        if await w.flush():
            break
    assert sink.started == 2 and await written(sqlite_store) == {"req-1", "req-2"}
    new = await sink.start()
    new.kill()  # killed between flushes, without anyone waiting for it: the next write finds out
    w.finished(record(3))
    ok = await w.flush()
    if not ok:
        assert len(w.buffer) == 1  # kept for the next tick
        ok = await w.flush()
    assert ok and await written(sqlite_store) == {"req-1", "req-2", "req-3"}
    await w.stop()


async def test_refused_rows_are_found_through_the_child(sqlite_store: SqliteStore) -> None:
    w = LedgerWriter(sqlite_store, LedgerConfig())
    for i in range(6):
        w.finished(record(i, status=2**70 if i == 4 else 200))  # no column takes it
    assert await w.flush() and w.rejected == 1 and w.written == 5
    await w.stop()
    await asyncio.sleep(0)
    assert await written(sqlite_store) == {f"req-{i}" for i in range(6)} - {"req-4"}
