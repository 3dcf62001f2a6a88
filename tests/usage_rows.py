"""Known ledger rows for the usage views' tests (CLI and admin API), and a store of each backend holding them.

Four requests in two whole hours a few hours ago (recent enough that no retention pass removes them)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator

import pytest

from smolgate.config import parse_config
from smolgate.store import UsageRow
from smolgate.store.open import open_store
from tests.postgres_server import PostgresServer

HOUR = int(time.time()) // 3600 * 3600 - 3 * 3600  # the first row's hour


def _row(**kw: object) -> UsageRow:
    base: dict[str, object] = {
        "request_id": f"req-{kw['ts']}",
        "client_protocol": "openai",
        "upstream_protocol": "openai",
    }
    return UsageRow(**{**base, **kw})  # type: ignore[arg-type]


ROWS = [
    _row(
        ts=HOUR + 60.0,
        key_id="vk_alice",
        alias="fast",
        provider="oai",
        account="team-a",
        upstream_model="gpt-4o",
        input_tokens=1000,
        cached_tokens=400,
        output_tokens=200,
        reasoning_tokens=50,
        cost_usd=0.01,
        latency_ms=100.0,
        ttft_ms=20.0,
        stream=True,
    ),
    _row(
        ts=HOUR + 120.0,
        key_id="vk_alice",
        alias="fast",
        provider="oai",
        account="team-b",
        upstream_model="gpt-4o",
        input_tokens=2000,
        output_tokens=300,
        cost_usd=0.02,
        latency_ms=300.0,
    ),
    _row(
        ts=HOUR + 3600 + 60.0,
        key_id="vk_bob",
        alias="claude",
        provider="ant",
        account="main",
        upstream_model="claude-sonnet-4-5",
        upstream_protocol="anthropic",
        input_tokens=500,
        cache_write_tokens=100,
        output_tokens=100,
        cost_usd=0.005,
        latency_ms=200.0,
        ttft_ms=50.0,
        stream=True,
        status=502,
        error_kind="upstream",
    ),
    _row(
        ts=HOUR + 3600 + 120.0,
        key_id=None,
        alias="default",
        provider="local",
        account="engine",
        upstream_model="default",
        upstream_protocol="local",
        input_tokens=10,
        output_tokens=10,
        latency_ms=1000.0,
        local=True,
    ),
]
SINCE = HOUR - 3600  # a window holding all four


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def filled_store(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The URL of a store of each backend holding ROWS (import this fixture into a test module)."""
    server = PostgresServer() if request.param == "postgres" else contextlib.nullcontext()
    with server as pg:
        if pg is None:
            url = f"sqlite:///{tmp_path_factory.mktemp('usage') / 'ledger.db'}"
        else:
            url = pg.create_database()

        async def fill() -> None:
            store = await open_store(parse_config(f"store: '{url}'\n"))
            await store.add_usage(ROWS)
            await store.close()

        asyncio.run(fill())
        yield url
