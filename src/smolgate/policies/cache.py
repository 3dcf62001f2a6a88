"""The response cache (issue #19 §4): an exact match on the canonical request, answered without an upstream.

What is cached: the canonical `Response` (a stream is folded into one), so an answer first given whole can be
replayed as a stream in any client protocol and the other way round. Errors, answers cut short, and answers of
the offline fallback (a stand-in: the upstream should answer once it is back) are never stored.

Which requests: an alias's `cache` settings, else the global `cache:`; by default only deterministic requests
(temperature 0, top_k 1, or a seed: the client asked for the same answer again), `requests: all` opts every
request in. A config key's own `cache: deterministic|all|off` decides for its requests on every alias that does
not turn the cache off (virtual keys have no such field yet: theirs follow the alias). A client's `x-smolgate-cache: no-cache` skips the lookup (the fresh answer replaces the entry);
`no-store` skips both.

The key (`cache_key`): a hash of the client key's id and a deterministic msgspec encoding of the request with
every field that changes the answer — model alias, system, messages (images by their bytes or URL), tools,
tool_choice, response_format, sampling, stop, reasoning, metadata and each protocol's pass-through parameters
— and without those that only shape the reply (stream, include_usage, the Responses store flag). Per key: one
key's answers are never served to another key (they may hold what that tenant pasted in its prompt); on an open
gateway there is one tenant. Requests under a privacy policy (`local`, `redact`) are never cached.

A hit costs nothing: its ledger row has `served_by = 'cache'`, no tokens and cost 0 (the client still sees the
usage of the original answer in the body).
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import msgspec

from ..accumulate import collect
from ..canonical import (
    BlockStart,
    BlockStop,
    Event,
    MessageDelta,
    MessageStart,
    MessageStop,
    Reasoning,
    ReasoningDelta,
    Request,
    Response,
    SignatureDelta,
    StreamError,
    Text,
    TextDelta,
    ToolArgsDelta,
    ToolCall,
    Usage,
)
from ..config import CacheConfig, CacheRequests, Config
from ..telemetry import RequestRecord
from .cache_store import CacheStore, MemoryCacheStore, RedisCacheStore

log = logging.getLogger("smolgate.cache")

KEY_PREFIX = "smolgate:cache:v1:"
_ENCODE = msgspec.json.Encoder(order="deterministic").encode  # dict keys sorted: the same request, one key
_PACK = msgspec.msgpack.Encoder().encode
_UNPACK = msgspec.msgpack.Decoder(Response).decode

Complete = Callable[[Request, RequestRecord | None], Awaitable[Response]]
Stream = Callable[[Request, RequestRecord | None], AsyncIterator[Event]]


def deterministic(req: Request) -> bool:
    return req.temperature == 0 or req.top_k == 1 or req.seed is not None


def cache_key(req: Request, scope: str) -> str:
    """The entry's key for `req` asked by tenant `scope` (see the module docs for what is in it)."""
    ex = req.extras
    shaping = ex.responses.client
    extras = msgspec.structs.replace(
        ex,
        openai=msgspec.structs.replace(ex.openai, include_usage=False),
        responses=msgspec.structs.replace(
            ex.responses,
            client=msgspec.structs.replace(shaping, store=True, previous_response_id=None)
            if shaping
            else None,
        ),
    )
    body = _ENCODE(msgspec.structs.replace(req, stream=False, origin=None, extras=extras))
    h = hashlib.blake2b(digest_size=20)
    h.update(scope.encode())
    h.update(b"\0")
    h.update(body)
    return KEY_PREFIX + h.hexdigest()


def replayable(resp: Response) -> bool:
    """Whether every block can be told as stream events (an Opaque or Image answer block cannot)."""
    return all(isinstance(b, (Text, ToolCall, Reasoning)) for b in resp.content)


def replay(resp: Response) -> Iterator[Event]:
    """A whole answer as the canonical events a stream of it would have had."""
    u = resp.usage
    prompt = Usage(
        input_tokens=u.input_tokens,
        cached_tokens=u.cached_tokens,
        cache_creation_tokens=u.cache_creation_tokens,
        cache_creation_1h_tokens=u.cache_creation_1h_tokens,
    )
    yield MessageStart(id=resp.id, model=resp.model, usage=prompt, created=resp.created)
    for i, b in enumerate(resp.content):
        if isinstance(b, Text):
            yield BlockStart(index=i, block=Text(text=""))
            if b.text:
                yield TextDelta(index=i, text=b.text)
        elif isinstance(b, ToolCall):
            yield BlockStart(index=i, block=msgspec.structs.replace(b, arguments=""))
            yield ToolArgsDelta(index=i, json=b.arguments)
        elif isinstance(b, Reasoning):
            yield BlockStart(index=i, block=Reasoning(redacted=b.redacted))
            if b.text:
                yield ReasoningDelta(index=i, text=b.text)
            if b.signature:
                yield SignatureDelta(index=i, signature=b.signature)
        yield BlockStop(index=i)
    yield MessageDelta(stop_reason=resp.stop_reason, stop_sequence=resp.stop_sequence, usage=u)
    yield MessageStop()


async def _aiter(events: list[Event]) -> AsyncIterator[Event]:
    for ev in events:
        yield ev


class _Policy(msgspec.Struct, frozen=True):
    ttl: float
    requests: CacheRequests


class ResponseCache:
    def __init__(self, cfg: Config, privacy: Callable[[Request], str] = lambda req: "standard") -> None:
        """`privacy`: a request's effective privacy policy (policies/privacy.py `Privacy.policy`)."""
        c: CacheConfig = cfg.cache
        self._privacy = privacy
        redis = c.backend == "redis" or (c.backend == "auto" and cfg.state is not None)
        self.store: CacheStore | None = None
        self._default = _Policy(c.ttl, c.requests) if c.enabled else None
        self._by_alias: dict[str, _Policy | None] = {}
        for m in cfg.models:
            a = m.cache
            if a is not None:
                self._by_alias[m.name] = (
                    _Policy(c.ttl if a.ttl is None else a.ttl, a.requests or c.requests)
                    if a.enabled
                    else None
                )
        # a config key's own opt-in: its mode on every alias that does not turn the cache off
        self._ttl = c.ttl
        self._by_key = {k.ledger_id: k.cache for k in cfg.keys if k.cache is not None}
        self._alias_off = {m.name for m in cfg.models if m.cache is not None and not m.cache.enabled}
        if self._default is None and not any(self._by_alias.values()) and not self._opted_in():
            return  # off everywhere: no store, and the request path costs one dict lookup
        if redis and cfg.state is not None:
            self.store = RedisCacheStore(cfg.state.reveal(), max_value=c.max_bytes // 8)
        else:
            self.store = MemoryCacheStore(c.max_entries, c.max_bytes)

    def _opted_in(self) -> bool:
        return any(mode != "off" for mode in self._by_key.values())

    def _applies(self, req: Request, key_id: str | None) -> _Policy | None:
        if self.store is None:
            return None
        # Never under a privacy policy (its key's, its alias's or its own): the answer holds what the policy
        # kept from the cloud, and a Redis cache is another machine.
        if self._privacy(req) != "standard":
            return None
        policy = self._by_alias.get(req.model, self._default)
        mode = self._by_key.get(key_id) if key_id is not None else None
        if mode is not None:
            if mode == "off" or req.model in self._alias_off:
                return None
            policy = _Policy(policy.ttl if policy is not None else self._ttl, mode)
        if policy is None or (policy.requests == "deterministic" and not deterministic(req)):
            return None
        return policy

    async def _lookup(self, key: str, control: str | None, rec: RequestRecord) -> Response | None:
        assert self.store is not None
        if control in ("no-cache", "no-store"):
            rec.cache = "bypass"
            return None
        raw = await self.store.get(key)
        if raw is not None:
            try:
                resp = _UNPACK(raw)
            except msgspec.DecodeError:  # written by another version: a miss, overwritten below
                resp = None
            if resp is not None:
                rec.cache, rec.served_by, rec.cost_usd, rec.usage = "hit", "cache", 0.0, None
                # a new id per answer, as clients expect; the created time is now
                return msgspec.structs.replace(
                    resp, id=f"{resp.id}-{secrets.token_hex(4)}", created=int(time.time())
                )
        rec.cache = "miss"
        return None

    async def _save(
        self, key: str, resp: Response, policy: _Policy, control: str | None, rec: RequestRecord
    ) -> None:
        if control == "no-store" or rec.served_by is not None or not replayable(resp):
            return
        assert self.store is not None
        await self.store.put(key, _PACK(resp), policy.ttl)

    async def complete(
        self, inner: Complete, req: Request, rec: RequestRecord | None, control: str | None
    ) -> Response:
        policy = self._applies(req, rec.key_id if rec is not None else None)
        if policy is None:
            return await inner(req, rec)
        rec = rec if rec is not None else RequestRecord("", "", "")
        key = cache_key(req, rec.key_id or "")
        hit = await self._lookup(key, control, rec)
        if hit is not None:
            return hit
        resp = await inner(req, rec)
        await self._save(key, resp, policy, control, rec)
        return resp

    def stream(
        self, inner: Stream, req: Request, rec: RequestRecord | None, control: str | None
    ) -> AsyncIterator[Event]:
        policy = self._applies(req, rec.key_id if rec is not None else None)
        if policy is None:
            return inner(req, rec)
        return self._stream(
            inner, req, rec if rec is not None else RequestRecord("", "", ""), control, policy
        )

    async def _stream(
        self, inner: Stream, req: Request, rec: RequestRecord, control: str | None, policy: _Policy
    ) -> AsyncIterator[Event]:
        key = cache_key(req, rec.key_id or "")
        hit = await self._lookup(key, control, rec)
        if hit is not None:
            rec.first_output()
            for ev in replay(hit):
                yield ev
            return
        assert self.store is not None
        budget = self.store.max_value  # past this many text bytes the answer is not kept (nor buffered)
        kept: list[Event] | None = []
        events = inner(req, rec)
        try:
            async for ev in events:
                if kept is not None:
                    if isinstance(ev, StreamError):
                        kept = None
                    elif isinstance(ev, MessageStop):  # complete: stored before the client sees its end
                        await self._save(key, await collect(_aiter(kept)), policy, control, rec)
                    else:
                        kept.append(ev)
                        budget -= len(getattr(ev, "text", "") or getattr(ev, "json", ""))
                        if budget < 0:
                            kept = None
                yield ev
        finally:
            aclose = getattr(events, "aclose", None)
            if aclose is not None:
                await aclose()

    async def close(self) -> None:
        if self.store is not None:
            await self.store.close()
