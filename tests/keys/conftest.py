"""Gateways with virtual keys: the four fake upstreams, a store, a data dir (its pepper), and helpers that
create keys through the admin API."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from smolgate.telemetry import RequestRecord
from tests.gateway.conftest import matrix_config, matrix_upstreams
from tests.gateway_server import GatewayServer
from tests.keys.memstore import MemStore

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


def start_gateway(cfg: str, store: Any = None) -> GatewayServer:
    gw = GatewayServer(cfg)
    rt = gw.app.runtime
    if store is not None:
        rt.store = store
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
def store() -> MemStore:
    return MemStore()


@pytest.fixture(scope="module")
def gw(urls, data_dir, store) -> Iterator[GatewayServer]:
    server = start_gateway(keyed_config(urls, data_dir), store)
    yield server
    server.stop()


def create(gw: GatewayServer, **fields: Any) -> tuple[dict[str, Any], str]:
    """A key made through the admin API: (its public view, its secret)."""
    r = httpx.post(gw.url + "/admin/keys", json=fields)
    assert r.status_code == 201, r.text
    body = r.json()
    return body["key"], body["secret"]
