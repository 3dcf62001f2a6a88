"""Gateways with virtual keys: the four fake upstreams, a data dir (its SQLite store and its pepper), and helpers
that create keys through the admin API or reach the store as another process would."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from smolgate.config import Config
from smolgate.store import Store
from smolgate.store.open import open_store
from smolgate.telemetry import RequestRecord
from tests.gateway.conftest import matrix_config, matrix_upstreams
from tests.gateway_server import GatewayServer

T = TypeVar("T")

COST = 0.25  # USD the tests' pricing charges per generation request


class Seen:
    """An observer keeping every finished request's record (key ids, usage)."""

    def __init__(self) -> None:
        self.records: list[RequestRecord] = []

    def finished(self, rec: RequestRecord) -> None:
        self.records.append(rec)


def keyed_config(urls: dict[str, str], data_dir: Path, extra: str = "") -> str:
    return matrix_config(
        urls,
        f"data_dir: {data_dir}\nserver: {{auth_failures: 100000}}\n{extra}",
    )


class Db:
    """The store of a data dir, opened afresh for each call (as the CLI, another process, would)."""

    def __init__(self, data_dir: Path, url: str | None = None) -> None:
        self.cfg = Config(data_dir=str(data_dir), store=url)  # type: ignore[arg-type]  # made a Secret
        self.path = data_dir / "smolgate.db"

    def run(self, job: Callable[[Store], Awaitable[T]]) -> T:
        async def main() -> T:
            store = await open_store(self.cfg)
            try:
                return await job(store)
            finally:
                await store.close()

        return asyncio.run(main())

    def raw_bytes(self) -> bytes:
        """Every byte SQLite keeps for it (the database and its write-ahead log)."""
        return b"".join(p.read_bytes() for p in self.path.parent.glob(self.path.name + "*"))


def start_gateway(cfg: str) -> GatewayServer:
    gw = GatewayServer(cfg)
    rt = gw.app.runtime
    rt.cost_of = lambda rec: COST if rec.generation and rec.status < 400 else 0.0
    gw.start()
    assert rt.vkeys is not None
    rt.vkeys.ttl = 0.2  # tests see other processes' changes quickly
    seen = Seen()
    rt.observers.append(seen)
    gw.seen = seen  # type: ignore[attr-defined]
    return gw


@pytest.fixture(scope="session")
def upstreams():
    with matrix_upstreams() as fakes:
        yield fakes


@pytest.fixture(scope="session")
def urls(upstreams) -> dict[str, str]:
    return {k: f.url for k, f in upstreams.items()}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("keys-home")


@pytest.fixture(scope="module")
def db(data_dir) -> Db:
    return Db(data_dir)


@pytest.fixture(scope="module")
def gw(urls, data_dir) -> Iterator[GatewayServer]:
    server = start_gateway(keyed_config(urls, data_dir))
    yield server
    server.stop()


def create(gw: GatewayServer, **fields: Any) -> tuple[dict[str, Any], str]:
    """A key made through the admin API: (its public view, its secret)."""
    r = httpx.post(gw.url + "/admin/keys", json=fields)
    assert r.status_code == 201, r.text
    body = r.json()
    return body["key"], body["secret"]
