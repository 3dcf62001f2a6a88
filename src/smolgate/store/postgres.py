"""`PostgresStore`: the store for several replicas, through asyncpg and a small connection pool.

Migrations run under a transaction-scoped advisory lock, so replicas starting together apply them once, in
turn. Every error that leaves `open()` is one line with the URL's password masked.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from urllib.parse import unquote, urlsplit

import asyncpg  # type: ignore[import-untyped]  # no stubs, no py.typed

from ..secret import redact_url
from .base import Conflict, StoreError
from .schema import MIGRATIONS, SCHEMA_VERSION, ddl
from .sql import Row, SqlStore

CONNECT_TIMEOUT = 10.0  # seconds: an unreachable database fails start-up after this, with one line
POOL_MIN, POOL_MAX = (
    1,
    4,
)  # the ledger flushes in batches and dashboards read rollups: few connections suffice
_MIGRATION_LOCK = 0x5347_0017  # pg_advisory_xact_lock key: "SG" + issue 17


class PostgresStore(SqlStore):
    dialect = "postgres"

    def __init__(self, url: str) -> None:
        self._url = url
        self.url_display = redact_url(url)
        self._pool: asyncpg.Pool | None = None

    async def open(self) -> None:
        if self._pool is not None:
            return
        try:
            pool = await asyncpg.create_pool(
                self._url, min_size=POOL_MIN, max_size=POOL_MAX, timeout=CONNECT_TIMEOUT, command_timeout=60
            )
        except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError, ValueError) as exc:
            raise StoreError(f"cannot connect to the store {self.url_display}: {self._clean(exc)}") from None
        try:
            async with pool.acquire() as conn:
                await _migrate(conn)
        except (OSError, asyncpg.PostgresError) as exc:
            await pool.close()
            raise StoreError(f"cannot migrate the store {self.url_display}: {self._clean(exc)}") from None
        self._pool = pool

    def _clean(self, exc: BaseException) -> str:
        """The error's first line, without the URL's password should a driver ever echo it."""
        text = (str(exc) or type(exc).__name__).splitlines()[0]
        password = _password(self._url)
        return text.replace(password, "***") if password else text

    async def close(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()

    @property
    def _p(self) -> asyncpg.Pool:
        if self._pool is None:
            raise StoreError("the store is not open")
        return self._pool

    async def _fetch(self, sql: str, args: Sequence[object] = ()) -> list[Row]:
        return list(await self._p.fetch(sql, *args))

    async def _execute(self, sql: str, args: Sequence[object] = ()) -> int:
        try:
            status = await self._p.execute(sql, *args)  # "DELETE 3", "UPDATE 1", "INSERT 0 1"
        except asyncpg.UniqueViolationError as exc:  # an update onto another row's unique value
            raise Conflict(exc.detail or str(exc)) from None
        tail = status.rsplit(" ", 1)[-1]
        return int(tail) if tail.isdigit() else 0

    async def _batch(self, steps: list[tuple[str, list[tuple[object, ...]]]]) -> None:
        try:
            async with self._p.acquire() as conn, conn.transaction():
                for sql, rows in steps:
                    await conn.executemany(sql, rows)
        except asyncpg.UniqueViolationError as exc:
            raise Conflict(exc.detail or str(exc)) from None


def _password(url: str) -> str | None:
    try:
        pw = urlsplit(url).password
    except ValueError:
        return None
    return unquote(pw) if pw else None


async def _migrate(conn: asyncpg.Connection) -> None:
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK)
        await conn.execute(ddl(SCHEMA_VERSION, "postgres"))
        done = await conn.fetchval("SELECT COALESCE(MAX(version), 0) FROM schema_version")
        for version, statements in enumerate(MIGRATIONS, 1):
            if version <= done:
                continue
            for statement in statements:
                await conn.execute(ddl(statement, "postgres"))
            await conn.execute(
                "INSERT INTO schema_version (version, applied) VALUES ($1, $2)", version, time.time()
            )
