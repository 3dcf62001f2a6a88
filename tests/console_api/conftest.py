"""Gateways for the console's server-side tests: the four fake upstreams (one per upstream protocol) behind a
real gateway with an admin key and a real SQLite store; `signed_in` gives an httpx client holding a console
session (its cookie in the jar) and the session's CSRF token."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.fakes.harness import FakeUpstream
from tests.gateway.conftest import matrix_config, matrix_upstreams
from tests.gateway_server import GatewayServer

ADMIN = "admin-console-0123456789abcdef"


def console_config(upstreams: dict[str, FakeUpstream], data_dir: Path, extra: str = "") -> str:
    head = f"data_dir: {data_dir}\nledger: {{flush_interval: 0.05}}\nserver: {{admin_key: {ADMIN}}}\n"
    return matrix_config({k: f.url for k, f in upstreams.items()}, head + extra)


@pytest.fixture(scope="session")
def upstreams() -> Iterator[dict[str, FakeUpstream]]:
    with matrix_upstreams() as fakes:
        yield fakes


@pytest.fixture(scope="module")
def gateway(upstreams, tmp_path_factory) -> Iterator[GatewayServer]:
    with GatewayServer(console_config(upstreams, tmp_path_factory.mktemp("console"))) as gw:
        yield gw


def signed_in(gw: GatewayServer, key: str = ADMIN) -> tuple[httpx.Client, str]:
    """A client with a console session, and its CSRF token."""
    c = httpx.Client(base_url=gw.url, timeout=30)
    r = c.post("/ui/api/session", json={"admin_key": key})
    assert r.status_code == 200, r.text
    return c, r.json()["csrf"]
