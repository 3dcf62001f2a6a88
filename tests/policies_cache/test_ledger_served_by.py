"""The ledger's `served_by` column on both backends (a SQLite file, a private PostgreSQL): migration 4 upgrades
a store written before it, and rows keep who answered when no upstream did."""

from __future__ import annotations

import time

from smolgate.config import parse_config
from smolgate.store import UsageRow
from smolgate.store.open import open_store
from smolgate.store.schema import MIGRATIONS
from tests.store.conftest import postgres, store_url

__all__ = ["postgres", "store_url"]  # the fixtures, of each backend


def _row(rid: str, served_by: str | None) -> UsageRow:
    return UsageRow(
        ts=time.time(),
        request_id=rid,
        key_id="vk_a",
        client_protocol="openai",
        alias="chat",
        provider=None if served_by == "cache" else "local" if served_by else "up",
        account=None,
        upstream_model=None,
        upstream_protocol=None,
        served_by=served_by,
    )


async def test_a_store_from_before_the_column_is_upgraded_and_keeps_served_by(store_url: str):
    later = MIGRATIONS[3:]
    del MIGRATIONS[3:]  # a store as the previous release left it
    try:
        old = await open_store(parse_config(f"store: '{store_url}'\n"))
        await old.close()
    finally:
        MIGRATIONS.extend(later)
    store = await open_store(parse_config(f"store: '{store_url}'\n"))
    try:
        await store.add_usage([_row("r-cache", "cache"), _row("r-offline", "offline"), _row("r-up", None)])
        rows = {r.request_id: r.served_by for r in await store.recent_usage(10)}
        assert rows == {"r-cache": "cache", "r-offline": "offline", "r-up": None}
    finally:
        await store.close()
