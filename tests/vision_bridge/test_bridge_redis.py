"""Replicas share descriptions through Redis (`state: redis://…`): an image one gateway described is a cache hit
on another; with Redis gone, each keeps its own memory and still answers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.gateway.clients import Ask, OpenAIChatClient
from tests.gateway_server import GatewayServer
from tests.pool.conftest import RedisServer, _ensure_binary

from .conftest import BRIDGE, bridge_config, image


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    _ensure_binary()
    srv = RedisServer(tmp_path_factory.mktemp("bridge-redis")).start()
    yield srv
    srv.stop()


def test_replicas_share_descriptions_through_redis(vlm_path: Path, fakes, redis_server, headers_seen):
    cfg = bridge_config(vlm_path, {k: f.url for k, f in fakes.items()}, top=f"state: {redis_server.url}\n")
    png = image((123, 45, 67))
    with GatewayServer(cfg) as a, GatewayServer(cfg) as b:
        OpenAIChatClient(a.url).ask("blind", Ask(turns=[("user", "What?")], image=png))
        assert headers_seen[-1][BRIDGE] == "images=1, cached=0"
        described = str(fakes["openai"].last.json["messages"])
        OpenAIChatClient(b.url).ask("blind", Ask(turns=[("user", "What?")], image=png, stream=True))
        assert headers_seen[-1][BRIDGE] == "images=1, cached=1"  # described by replica a, read from Redis
        assert str(fakes["openai"].last.json["messages"]) == described
        redis_server.stop()
        try:  # Redis down: the bridge degrades to this replica's memory, the request is still answered
            OpenAIChatClient(b.url).ask("blind", Ask(turns=[("user", "What?")], image=image((1, 45, 67))))
            assert headers_seen[-1][BRIDGE] == "images=1, cached=0"
        finally:
            redis_server.start()
