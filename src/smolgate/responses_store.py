"""Stored Responses-API responses: what `store: true`, `previous_response_id`, `item_reference` and
`GET/DELETE /v1/responses/{id}[/input_items]` read and write.

`ResponseStore` is the interface (async, so a database store can implement it later); `MemoryResponseStore`
is the default: bounded by count and by bytes (least recently used first out) and by age (TTL). Every
record belongs to an owner (a hash of the client key that created it): another client's ids are "not found".

A record keeps the response object with its *full* output items (reasoning `encrypted_content` included,
whatever the client asked to see) and the full input context of that response — the previous response's
context and output, then this request's own items — so a chain is one lookup, and an evicted ancestor
never breaks its descendants. Items are also indexed by id (owner-scoped) for `item_reference`.
"""

from __future__ import annotations

import abc
import re
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import orjson

from .errors import invalid

_ID = re.compile(r"[A-Za-z0-9_-]{1,128}\Z")


def check_id(value: object, param: str) -> str:
    """Ids reach the store only in a known charset and length (no paths, no control characters)."""
    if not isinstance(value, str) or not _ID.match(value):
        raise invalid(f"'{param}' must be an id of letters, digits, '_' and '-' (at most 128)", param=param)
    return value


@dataclass(slots=True)
class StoredResponse:
    id: str
    owner: str
    response: dict[str, Any]  # the response object, `output` holding the full items
    input_items: list[dict[str, Any]]  # the whole input context, each item with an id
    created: float = field(default_factory=time.time)
    size: int = 0  # bytes, as serialized: what the byte bound counts

    @property
    def conversation(self) -> list[dict[str, Any]]:
        """What a request with `previous_response_id` = this id continues from."""
        return self.input_items + list(self.response.get("output") or [])


class ResponseStore(abc.ABC):
    @abc.abstractmethod
    async def put(self, rec: StoredResponse) -> None: ...

    @abc.abstractmethod
    async def get(self, owner: str, rid: str) -> StoredResponse | None: ...

    @abc.abstractmethod
    async def delete(self, owner: str, rid: str) -> bool: ...

    @abc.abstractmethod
    async def item(self, owner: str, item_id: str) -> dict[str, Any] | None:
        """An input or output item of a stored response, by its id (the newest response holding it)."""


class MemoryResponseStore(ResponseStore):
    def __init__(
        self, max_responses: int = 2000, max_bytes: int = 128 * 1024 * 1024, ttl: float = 6 * 3600.0
    ) -> None:
        self.max_responses, self.max_bytes, self.ttl = max_responses, max_bytes, ttl
        self._recs: OrderedDict[tuple[str, str], StoredResponse] = OrderedDict()
        self._items: dict[
            tuple[str, str], tuple[str, dict[str, Any]]
        ] = {}  # (owner, item id) → (resp id, item)
        self.bytes = 0

    def __len__(self) -> int:
        return len(self._recs)

    async def put(self, rec: StoredResponse) -> None:
        if not rec.size:
            rec.size = len(orjson.dumps(rec.response)) + len(orjson.dumps(rec.input_items))
        if rec.size > self.max_bytes:
            return  # larger than the whole store: not kept (a later lookup is a clean 404)
        self._drop((rec.owner, rec.id))
        self._recs[(rec.owner, rec.id)] = rec
        self.bytes += rec.size
        for item in rec.conversation:
            iid = item.get("id")
            if isinstance(iid, str):
                self._items[(rec.owner, iid)] = (rec.id, item)
        self._evict()

    async def get(self, owner: str, rid: str) -> StoredResponse | None:
        key = (owner, rid)
        rec = self._recs.get(key)
        if rec is None:
            return None
        if time.time() - rec.created > self.ttl:
            self._drop(key)
            return None
        self._recs.move_to_end(key)
        return rec

    async def delete(self, owner: str, rid: str) -> bool:
        return self._drop((owner, rid))

    async def item(self, owner: str, item_id: str) -> dict[str, Any] | None:
        hit = self._items.get((owner, item_id))
        if hit is None:
            return None
        if await self.get(owner, hit[0]) is None:  # expired, or its response is gone
            self._items.pop((owner, item_id), None)
            return None
        return hit[1]

    def _drop(self, key: tuple[str, str]) -> bool:
        rec = self._recs.pop(key, None)
        if rec is None:
            return False
        self.bytes -= rec.size
        for item in rec.conversation:
            iid = item.get("id")
            ikey = (rec.owner, iid) if isinstance(iid, str) else None
            if ikey is not None and self._items.get(ikey, ("",))[0] == rec.id:
                del self._items[ikey]
        return True

    def _evict(self) -> None:
        now = time.time()
        while self._recs and (
            len(self._recs) > self.max_responses
            or self.bytes > self.max_bytes
            or now - next(iter(self._recs.values())).created > self.ttl
        ):
            self._drop(next(iter(self._recs)))
