"""The response cache's parts on their own: what its key covers, the replay of a whole answer as a stream, and
both stores' bounds (the memory LRU by entries and bytes; a real redis-server with its TTL, and gone)."""

from __future__ import annotations

import asyncio

import msgspec
import pytest
import redis

from smolgate.accumulate import collect
from smolgate.canonical import (
    Message,
    Reasoning,
    Request,
    Response,
    StopReason,
    Text,
    Tool,
    ToolCall,
    Usage,
)
from smolgate.config import parse_config
from smolgate.policies.cache import ResponseCache, cache_key, deterministic, replay
from smolgate.policies.cache_store import MemoryCacheStore, RedisCacheStore
from tests.pool.conftest import RedisServer


def _req(**kw: object) -> Request:
    base = Request(model="chat", messages=[Message(role="user", content=[Text(text="hi")])], temperature=0)
    return msgspec.structs.replace(base, **kw)


def test_the_key_covers_what_changes_the_answer():
    k = cache_key(_req(), "vk_a")
    assert cache_key(_req(), "vk_a") == k
    assert cache_key(_req(stream=True), "vk_a") == k  # a whole answer serves a stream and back
    changed = [
        _req(model="other"),
        _req(messages=[Message(role="user", content=[Text(text="hi!")])]),
        _req(system=[Text(text="be terse")]),
        _req(tools=[Tool(name="f")]),
        _req(temperature=0.0001),
        _req(max_tokens=5),
        _req(stop=["x"]),
        _req(seed=1),
        _req(metadata={"user_id": "u1"}),
    ]
    assert len({cache_key(r, "vk_a") for r in changed} | {k}) == len(changed) + 1
    assert cache_key(_req(), "vk_b") != k  # per tenant


def test_the_key_ignores_the_order_of_json_object_members():
    a = _req(tools=[Tool(name="f", parameters={"type": "object", "properties": {"x": {}, "y": {}}})])
    b = _req(tools=[Tool(name="f", parameters={"properties": {"y": {}, "x": {}}, "type": "object"})])
    assert cache_key(a, "") == cache_key(b, "")


def test_which_requests_are_deterministic():
    assert deterministic(_req())
    assert deterministic(_req(temperature=0.8, seed=7))
    assert deterministic(_req(temperature=None, top_k=1))
    assert not deterministic(_req(temperature=None))
    assert not deterministic(_req(temperature=0.2))


async def test_a_whole_answer_replays_as_the_same_stream():
    resp = Response(
        id="msg_1",
        model="m",
        content=[
            Reasoning(text="think", signature="sig"),
            Text(text="hello"),
            ToolCall(id="call_1", name="f", arguments='{"a":1}'),
        ],
        stop_reason=StopReason.TOOL_USE,
        usage=Usage(input_tokens=5, output_tokens=7, cached_tokens=2),
        created=1,
    )

    async def events():  # type: ignore[no-untyped-def]
        for ev in replay(resp):
            yield ev

    assert await collect(events()) == resp


async def test_the_memory_store_is_bounded_by_entries_and_bytes():
    s = MemoryCacheStore(max_entries=3, max_bytes=8000)
    for i in range(5):
        await s.put(f"k{i}", b"x" * 10, 60)
    assert len(s) == 3 and await s.get("k0") is None and await s.get("k4") == b"x" * 10
    await s.get("k2")  # used: the least recently used (k3) goes first
    await s.put("k5", b"y", 60)
    assert await s.get("k3") is None and await s.get("k2") is not None
    await s.put("big", b"z" * 1001, 60)  # more than max_bytes / 8: never kept
    assert await s.get("big") is None
    for i in range(3):
        await s.put(f"m{i}", b"w" * 900, 60)
    assert s.bytes <= 8000 and len(s) == 3
    assert s.bytes == sum(len(k) + 900 for k in ("m0", "m1", "m2"))


async def test_a_memory_entry_expires_after_its_ttl():
    s = MemoryCacheStore(max_entries=10, max_bytes=1 << 20)
    await s.put("short", b"v", 0.01)
    await s.put("long", b"v", 60)
    await asyncio.sleep(0.05)
    assert await s.get("short") is None and await s.get("long") == b"v"
    assert len(s) == 1 and s.bytes == len("long") + 1


@pytest.fixture(scope="module")
def redis_srv(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    srv = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield srv
    srv.stop()


async def test_the_redis_store_shares_entries_with_their_ttl(redis_srv: RedisServer):
    a, b = RedisCacheStore(redis_srv.url, max_value=100), RedisCacheStore(redis_srv.url, max_value=100)
    try:
        await a.put("smolgate:cache:v1:t1", b"answer", 30)
        assert await b.get("smolgate:cache:v1:t1") == b"answer"  # another replica sees it
        ttl = redis.Redis(port=redis_srv.port).pttl("smolgate:cache:v1:t1")
        assert 0 < ttl <= 30_000
        await a.put("smolgate:cache:v1:t2", b"x" * 101, 30)  # too large: not stored
        assert await b.get("smolgate:cache:v1:t2") is None
    finally:
        await a.close()
        await b.close()


async def test_a_redis_that_is_gone_is_a_miss_not_an_error(tmp_path):  # type: ignore[no-untyped-def]
    srv = RedisServer(tmp_path).start()
    store = RedisCacheStore(srv.url, max_value=100)
    srv.stop()
    try:
        await store.put("k", b"v", 30)
        assert await store.get("k") is None
        assert await store.get("k") is None  # left alone for a while: no second wait on a dead server
    finally:
        await store.close()


def test_the_backend_follows_the_config(redis_srv: RedisServer):
    mem = ResponseCache(parse_config("cache: {enabled: true}\n"))
    assert isinstance(mem.store, MemoryCacheStore)
    shared = ResponseCache(parse_config(f"state: {redis_srv.url}\ncache: {{enabled: true}}\n"))
    assert isinstance(shared.store, RedisCacheStore)
    forced = ResponseCache(
        parse_config(f"state: {redis_srv.url}\ncache: {{enabled: true, backend: memory}}\n")
    )
    assert isinstance(forced.store, MemoryCacheStore)
    assert ResponseCache(parse_config("{}\n")).store is None  # off: nothing on the request path
    asyncio.run(shared.close())
