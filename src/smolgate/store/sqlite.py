"""`SqliteStore`: the default store, one SQLite file (WAL) through aiosqlite.

One connection, its own thread (aiosqlite); an asyncio lock keeps one coroutine's transaction from
interleaving with another's statements. WAL lets readers (`smolgate usage` in another process) run while the
gateway writes; synchronous=NORMAL is durable across a killed process (only an OS crash can lose the last
commits), which is what the kill -9 guarantee needs.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path

import aiosqlite

from .base import Conflict, StoreError
from .schema import MIGRATIONS, SCHEMA_VERSION, ddl
from .sql import Row, SqlStore

BUSY_TIMEOUT_MS = 10_000  # another process (the CLI, a second replica) holding the write lock: wait this long


class SqliteStore(SqlStore):
    dialect = "sqlite"

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)  # ":memory:" or a file path
        self.url_display = f"sqlite:///{self.path.lstrip('/')}"
        self._db: aiosqlite.Connection | None = None  # writes (and reads, for :memory:)
        self._reader: aiosqlite.Connection | None = None  # reads: WAL lets them run while a batch is written
        self._lock = asyncio.Lock()  # one write transaction at a time on the writer

    async def open(self) -> None:
        if self._db is not None:
            return
        if self.path != ":memory:":
            try:
                _create_private(Path(self.path))
            except OSError as exc:
                raise StoreError(
                    f"cannot create the SQLite store {self.url_display}: {exc.strerror}"
                ) from None
        db = await self._connect()
        try:
            await _migrate(db)
            # A key lookup or budget check must not wait behind a ledger batch: reads get their own connection.
            self._reader = await self._connect(read_only=True) if self.path != ":memory:" else db
        except (sqlite3.Error, StoreError) as exc:
            await db.close()
            if isinstance(exc, StoreError):
                raise
            raise StoreError(f"cannot open the SQLite store {self.url_display}: {exc}") from None
        self._db = db

    async def _connect(self, read_only: bool = False) -> aiosqlite.Connection:
        conn = aiosqlite.connect(self.path, isolation_level=None)  # we issue BEGIN/COMMIT ourselves
        worker = getattr(conn, "_thread", None)
        if (
            worker is not None
        ):  # a store left open must not keep the process alive at exit (commits are atomic)
            worker.daemon = True
        try:
            db = await conn
            await db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            if read_only:
                await db.execute("PRAGMA query_only = ON")
            else:
                await db.execute("PRAGMA journal_mode = WAL")
                await db.execute("PRAGMA synchronous = NORMAL")
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open the SQLite store {self.url_display}: {exc}") from None
        return db

    async def close(self) -> None:
        if self._db is not None:
            db, reader, self._db, self._reader = self._db, self._reader, None, None
            async with self._lock:
                if reader is not None and reader is not db:
                    await reader.close()
                await db.close()

    @property
    def _conn(self) -> aiosqlite.Connection:
        if self._db is None:
            raise StoreError("the store is not open")
        return self._db

    async def _fetch(self, sql: str, args: Sequence[object] = ()) -> list[Row]:
        if self._reader is None:
            raise StoreError("the store is not open")
        async with self._reader.execute(sql, args) as cur:
            return list(await cur.fetchall())

    async def _execute(self, sql: str, args: Sequence[object] = ()) -> int:
        async with self._lock:
            try:
                async with self._conn.execute(sql, args) as cur:
                    return cur.rowcount
            except sqlite3.IntegrityError as exc:  # an update onto another row's unique value
                raise Conflict(str(exc)) from None

    async def _batch(self, steps: list[tuple[str, list[tuple[object, ...]]]]) -> None:
        async with self._lock:
            db = self._conn
            await db.execute("BEGIN IMMEDIATE")
            try:
                for sql, rows in steps:
                    await db.executemany(sql, rows)
            except BaseException as exc:
                await db.rollback()
                if isinstance(exc, sqlite3.IntegrityError):
                    raise Conflict(str(exc)) from None
                raise
            await db.commit()


def _create_private(path: Path) -> None:
    """The data dir 0700 and the database file 0600 when we create them (the ledger and hashed keys are private;
    SQLite gives its -wal and -shm files the database file's permissions)."""
    if not path.parent.exists():
        path.parent.mkdir(parents=True, mode=0o700)
    if not path.exists():
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))


async def _migrate(db: aiosqlite.Connection) -> None:
    """Apply pending migrations in one write transaction: BEGIN IMMEDIATE takes the write lock first, so a second
    process starting at the same time waits (busy_timeout), then finds them applied."""
    await db.execute("BEGIN IMMEDIATE")
    try:
        await db.execute(ddl(SCHEMA_VERSION, "sqlite"))
        async with db.execute("SELECT COALESCE(MAX(version), 0) FROM schema_version") as cur:
            row = await cur.fetchone()
        done = int(row[0]) if row else 0
        for version, statements in enumerate(MIGRATIONS, 1):
            if version <= done:
                continue
            for statement in statements:
                await db.execute(ddl(statement, "sqlite"))
            await db.execute(
                "INSERT INTO schema_version (version, applied) VALUES (?, ?)", (version, time.time())
            )
    except BaseException:
        await db.rollback()
        raise
    await db.commit()
