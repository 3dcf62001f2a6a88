"""Stores for the store tests: every test runs on both backends — a SQLite file in tmp and a fresh database on a
private PostgreSQL (one server for the session, started from Debian's binaries)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from smolgate.config import parse_config
from smolgate.store import Store
from smolgate.store.open import open_store
from tests.postgres_server import PostgresServer


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    with PostgresServer() as pg:
        yield pg


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A URL for an empty store of each backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    pg: PostgresServer = request.getfixturevalue("postgres")
    return pg.create_database()


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    s = await open_store(parse_config(f"store: '{store_url}'\n"))
    yield s
    await s.close()
