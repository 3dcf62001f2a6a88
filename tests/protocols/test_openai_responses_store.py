"""The in-memory response store's bounds: count and bytes (least recently used out first), age, owners."""

from __future__ import annotations

import asyncio
import time

import pytest

from smolgate.errors import GatewayError
from smolgate.responses_store import MemoryResponseStore, StoredResponse, check_id


def rec(rid: str, owner: str = "o", text: str = "x", created: float | None = None) -> StoredResponse:
    out = [
        {
            "id": f"msg_{rid}",
            "type": "message",
            "role": "assistant",
            "content": [{"type": "output_text", "text": text}],
        }
    ]
    return StoredResponse(
        rid,
        owner,
        {"id": rid, "output": out},
        [{"id": f"in_{rid}", "type": "message", "role": "user", "content": "q"}],
        **({"created": created} if created is not None else {}),
    )


def run(coro):
    return asyncio.run(coro)


def test_count_bound_drops_least_recently_used():
    async def go() -> None:
        s = MemoryResponseStore(max_responses=2)
        await s.put(rec("a"))
        await s.put(rec("b"))
        assert await s.get("o", "a") is not None  # a is now the most recently used
        await s.put(rec("c"))
        assert await s.get("o", "b") is None and await s.get("o", "a") is not None and len(s) == 2
        assert await s.item("o", "msg_b") is None and await s.item("o", "msg_c") is not None

    run(go())


def test_byte_bound_and_oversized_records():
    async def go() -> None:
        s = MemoryResponseStore(max_bytes=1000)
        await s.put(rec("big", text="y" * 5000))  # larger than the whole store: not kept
        assert len(s) == 0 and s.bytes == 0
        for i in range(10):
            await s.put(rec(f"r{i}", text="z" * 200))
        assert s.bytes <= 1000 and len(s) < 10 and await s.get("o", "r9") is not None

    run(go())


def test_expired_records_are_gone():
    async def go() -> None:
        s = MemoryResponseStore(ttl=60)
        await s.put(rec("old", created=time.time() - 120))
        await s.put(rec("new"))
        assert await s.get("o", "old") is None and await s.item("o", "msg_old") is None
        assert await s.get("o", "new") is not None

    run(go())


def test_owners_do_not_see_each_other():
    async def go() -> None:
        s = MemoryResponseStore()
        await s.put(rec("a", owner="alice"))
        assert await s.get("bob", "a") is None and await s.item("bob", "msg_a") is None
        assert not await s.delete("bob", "a") and await s.get("alice", "a") is not None
        assert await s.delete("alice", "a") and s.bytes == 0

    run(go())


@pytest.mark.parametrize("bad", ["", "a/b", "a b", "x" * 129, "résumé", None, 5])
def test_check_id_refuses_anything_but_the_id_charset(bad):
    with pytest.raises(GatewayError):
        check_id(bad, "p")
