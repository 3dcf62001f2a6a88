"""Opening a store: the backend from the URL, the default file in the data dir (private permissions), versioned
migrations applied once (also when two replicas start together), and one-line errors that mask passwords."""

from __future__ import annotations

import asyncio
import stat
from pathlib import Path

import pytest

from smolgate.config import parse_config
from smolgate.store import KeyRow, StoreError
from smolgate.store.open import open_store
from smolgate.store.postgres import PostgresStore
from smolgate.store.schema import MIGRATIONS
from smolgate.store.sql import SqlStore
from smolgate.store.sqlite import SqliteStore
from tests.postgres_server import PostgresServer


def cfg(yaml: str):  # type: ignore[no-untyped-def]
    return parse_config(yaml)


async def versions(store: SqlStore) -> list[int]:
    return [int(r[0]) for r in await store._fetch("SELECT version FROM schema_version ORDER BY version")]


async def test_the_default_store_is_a_private_file_in_the_data_dir(tmp_path: Path) -> None:
    home = tmp_path / "fresh" / "home"
    store = await open_store(cfg(f"data_dir: {home}\n"))
    try:
        assert isinstance(store, SqliteStore)
        db = home / "smolgate.db"
        assert db.exists() and store.url_display == f"sqlite:///{str(db).lstrip('/')}"
        assert stat.S_IMODE(home.stat().st_mode) == 0o700
        assert stat.S_IMODE(db.stat().st_mode) == 0o600
        journal = (await store._fetch("PRAGMA journal_mode"))[0][0]
        assert journal == "wal"
    finally:
        await store.close()


async def test_smolgate_home_is_the_default_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SMOLGATE_HOME", str(tmp_path / "h"))
    store = await open_store(cfg("{}\n"))
    await store.close()
    assert (tmp_path / "h" / "smolgate.db").exists()


async def test_memory_store(tmp_path: Path) -> None:
    store = await open_store(cfg("store: 'sqlite:///:memory:'\n"))
    await store.close()
    assert isinstance(store, SqliteStore) and store.path == ":memory:"


async def test_migrations_are_versioned_and_idempotent(store_url: str) -> None:
    config = cfg(f"store: '{store_url}'\n")
    for _ in range(2):  # a restart finds everything applied
        store = await open_store(config)
        assert isinstance(store, SqlStore)
        assert await versions(store) == list(range(1, len(MIGRATIONS) + 1))
        await store.close()


async def test_replicas_starting_together_migrate_once(store_url: str) -> None:
    config = cfg(f"store: '{store_url}'\n")
    stores = await asyncio.gather(*(open_store(config) for _ in range(4)))
    try:
        for s in stores:
            assert isinstance(s, SqlStore)
            assert await versions(s) == list(range(1, len(MIGRATIONS) + 1))
    finally:
        for s in stores:
            await s.close()


async def test_two_postgres_stores_open_at_once(postgres: PostgresServer) -> None:
    url = postgres.create_database()
    a, b = PostgresStore(url), PostgresStore(url)
    await asyncio.gather(a.open(), b.open())
    try:
        assert await versions(a) == await versions(b) == list(range(1, len(MIGRATIONS) + 1))
    finally:
        await a.close()
        await b.close()


@pytest.mark.parametrize(
    "url,expected",
    [
        (
            "mysql://root:hunter2@db/x",
            "store mysql://***@db/x: unknown scheme 'mysql'; use sqlite:///path or",
        ),
        ("sqlite://relative.db", "store sqlite://relative.db: want sqlite:///absolute/path.db or"),
    ],
)
async def test_bad_urls_are_one_line(url: str, expected: str) -> None:
    with pytest.raises(StoreError) as err:
        await open_store(cfg(f"store: '{url}'\n"))
    assert str(err.value).startswith(expected) and "\n" not in str(err.value)
    assert "hunter2" not in str(err.value)


async def test_an_unreachable_database_is_one_line_without_its_password() -> None:
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(StoreError) as err:
        await open_store(cfg(f"store: 'postgresql://app:s3cret-pw@127.0.0.1:{port}/db'\n"))
    text = str(err.value)
    assert text.startswith(f"cannot connect to the store postgresql://***@127.0.0.1:{port}/db: ")
    assert "s3cret-pw" not in text and "\n" not in text


async def test_an_unwritable_sqlite_path_is_one_line(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(StoreError) as err:
        await open_store(cfg(f"store: 'sqlite:///{blocker}/sub/x.db'\n"))
    assert str(err.value) == f"cannot create the SQLite store sqlite://{blocker}/sub/x.db: Not a directory"


async def test_sqlite_reads_do_not_wait_for_a_write_transaction(tmp_path: Path) -> None:
    """A key lookup or budget check on the request path runs while a ledger batch holds the write lock (WAL: the
    reader sees the last commit)."""
    store = SqliteStore(tmp_path / "s.db")
    await store.open()
    try:
        await store.add_key(KeyRow(id="vk_1", name="one", prefix="sg-1", hash="h1", created=1.0))
        async with store._lock:  # a batch in progress on the writer connection
            await store._conn.execute("BEGIN IMMEDIATE")
            await store._conn.execute("UPDATE keys SET name = 'renamed' WHERE id = 'vk_1'")
            found = await asyncio.wait_for(store.key_by_hash("h1"), 30)
            assert found is not None and found.name == "one"
            await store._conn.commit()
        found = await store.key_by_hash("h1")
        assert found is not None and found.name == "renamed"
    finally:
        await store.close()
