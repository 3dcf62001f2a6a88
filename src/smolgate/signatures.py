"""Signed reasoning state kept across client protocols that have no place for it, and put back upstream.

A Gemini 3 model refuses a history whose function calls lost their `thoughtSignature`; an Anthropic model
with thinking on refuses a tool loop whose last assistant turn does not open with its signed thinking block.
OpenAI Chat and Ollama clients have no field for either, Anthropic clients none for Gemini signatures and
Gemini clients none for Anthropic thinking, so the history comes back without them.

Where it is kept: a bounded server-side store keyed by tool-call id (in memory: LRU by count and bytes with
a TTL; also in Redis when `state: redis://…` is configured, so replicas share it). Not inside the tool-call
id: thinking text and signatures run to kilobytes, ids are logged, shown and stored by every SDK and
framework, OpenAI's own API caps call ids at 40 characters, and the Ollama Python SDK drops ids altogether.
Keys are hashes of (client key hash, provider kind, call id), so one client's state is never applied to
another client's request and Redis never sees a client key or a raw id. Ollama clients that drop ids are
looked up by the call's name and canonical arguments instead (the latest turn with that exact call wins).

What is put back, only toward the provider kind that made it, and only for the current turn (the
assistant tool-call messages after the last user message that is not only tool results):
- Anthropic with thinking on: the turn's signed `thinking` / `redacted_thinking` blocks, first in the
  assistant message, exactly as they came. When the last tool-use turn has none to send back and thinking
  is `enabled`, thinking is switched off for that request (the upstream would refuse it otherwise);
  `adaptive` thinking may skip thinking on a turn, so Anthropic does not require the block and it stays on.
- Gemini: each function call's thoughtSignature. Toward Gemini ≥ 3, a step whose first call still has none
  (history from another model, or expired) gets the documented bypass value `skip_thought_signature_validator`
  (accepted by the Gemini API and Vertex) — only then.
Records are written before the response's final event reaches the client, so its next turn finds them.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import time
from collections import OrderedDict
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import orjson

from . import reasoning
from .canonical import (
    Block,
    BlockStart,
    Event,
    Message,
    MessageDelta,
    MessageStop,
    Origin,
    Reasoning,
    ReasoningDelta,
    Request,
    SignatureDelta,
    ToolArgsDelta,
    ToolCall,
    ToolResult,
)

log = logging.getLogger("smolgate.signatures")

BYPASS = "skip_thought_signature_validator"
KINDS = ("anthropic", "gemini")  # provider protocols whose signed state is kept
# Client protocols whose SDKs may drop call ids (Ollama has none; Gemini's are optional and LangChain's Google
# client sends functionCalls back without them): also keyed by name + canonical arguments.
_LOSES_IDS = frozenset(("ollama", "gemini"))
_ID_BAD = re.compile(r"[^A-Za-z0-9_-]")  # ids as an Anthropic client sees them (anthropic_stream.tool_id)
_GEMINI_MAJOR = re.compile(r"gemini-(\d+)")


def owner_id(key: str | None) -> str:
    """The opaque owner of a client key (as the response store's): a hash, never the key."""
    return hashlib.sha256(key.encode()).hexdigest()[:32] if key else ""


def _key(owner: str, space: str, text: str) -> str:
    return "smolgate:sig:" + hashlib.sha256(f"{owner}\0{space}\0{text}".encode()).hexdigest()[:40]


def _canon_args(arguments: str) -> str:
    try:
        return orjson.dumps(orjson.loads(arguments or "{}"), option=orjson.OPT_SORT_KEYS).decode()
    except orjson.JSONDecodeError:
        return arguments.strip()


def _call_keys(origin: Origin, kind: str, call: ToolCall) -> list[str]:
    keys = [_key(origin.owner, kind + ":id", _ID_BAD.sub("_", call.id))]
    if origin.protocol in _LOSES_IDS:
        keys.append(_key(origin.owner, kind + ":args", call.name + "\0" + _canon_args(call.arguments)))
    return keys


def _anthropic_signed(b: Block) -> bool:
    """A block Anthropic can take back: thinking with its own signature, or text-less redacted thinking."""
    return isinstance(b, Reasoning) and (
        bool(b.signature and ":" not in b.signature) or bool(b.redacted and not b.text and not b.signature)
    )


def gemini3(model: str) -> bool:
    m = _GEMINI_MAJOR.search(model.lower())
    return m is not None and int(m.group(1)) >= 3


# ---------------------------------------------------------------- the store


class SignatureStore:
    """Bytes by key: an in-process LRU (count, bytes, TTL), written through to Redis when configured."""

    def __init__(
        self,
        max_entries: int = 20_000,
        max_bytes: int = 64 << 20,
        ttl: float = 6 * 3600,
        max_value: int = 1 << 20,
        redis_url: str | None = None,
        timeout: float = 0.5,
        label: str = "signature store",  # how its warnings name it (the vision bridge's cache is one too)
    ) -> None:
        self.label = label
        self.max_entries, self.max_bytes, self.ttl, self.max_value = max_entries, max_bytes, ttl, max_value
        self._mem: OrderedDict[str, tuple[float, bytes]] = OrderedDict()
        self.bytes = 0
        self._redis_url, self._timeout = redis_url, timeout
        self._redis: Any = None
        self._down_until = 0.0

    def __len__(self) -> int:
        return len(self._mem)

    def _put_local(self, key: str, value: bytes, expires: float) -> None:
        old = self._mem.pop(key, None)
        if old is not None:
            self.bytes -= len(key) + len(old[1])
        self._mem[key] = (expires, value)
        self.bytes += len(key) + len(value)
        while self._mem and (len(self._mem) > self.max_entries or self.bytes > self.max_bytes):
            k, (_, v) = self._mem.popitem(last=False)
            self.bytes -= len(k) + len(v)

    def _get_local(self, key: str, now: float) -> bytes | None:
        hit = self._mem.get(key)
        if hit is None:
            return None
        if hit[0] <= now:
            del self._mem[key]
            self.bytes -= len(key) + len(hit[1])
            return None
        self._mem.move_to_end(key)
        return hit[1]

    async def put(self, items: dict[str, bytes]) -> None:
        items = {
            k: v for k, v in items.items() if len(v) <= self.max_value
        }  # one huge record never evicts all
        expires = time.monotonic() + self.ttl
        for k, v in items.items():
            self._put_local(k, v, expires)
        r = self._client()
        if r is not None and items:
            pipe = r.pipeline(transaction=False)
            for k, v in items.items():
                pipe.set(k, v, px=int(self.ttl * 1000))
            await self._shared(pipe.execute())

    async def get(self, keys: list[str]) -> dict[str, bytes]:
        now = time.monotonic()
        out = {k: v for k in keys if (v := self._get_local(k, now)) is not None}
        missing = [k for k in keys if k not in out]
        r = self._client()
        if r is not None and missing:
            values = await self._shared(r.mget(missing))
            for k, v in zip(missing, values or (), strict=False):  # no reply: nothing shared
                if isinstance(v, bytes):
                    out[k] = v
                    self._put_local(k, v, now + self.ttl)  # a later turn on this replica needs no round trip
        return out

    def _client(self) -> Any:
        if self._redis_url is None or time.monotonic() < self._down_until:
            return None
        if self._redis is None:
            from redis.asyncio import Redis
            from redis.asyncio.retry import Retry
            from redis.backoff import NoBackoff

            self._redis = Redis.from_url(
                self._redis_url,
                socket_timeout=self._timeout,
                socket_connect_timeout=self._timeout,
                retry=Retry(NoBackoff(), 0),
            )
        return self._redis

    async def _shared(self, op: Any) -> Any:
        """A Redis call that never fails the request: on error this replica goes on with its memory alone."""
        try:
            return await asyncio.wait_for(op, self._timeout * 4)
        except Exception as exc:  # any Redis failure degrades to memory, never to the client
            if time.monotonic() >= self._down_until:
                log.warning(
                    "%s: redis unreachable (%s); using this replica's memory for 5 s",
                    self.label,
                    type(exc).__name__,
                )
            self._down_until = time.monotonic() + 5.0
            return None

    async def close(self) -> None:
        if self._redis is not None:
            await self._redis.aclose()


# ---------------------------------------------------------------- record and restore


class Signatures:
    """The dispatcher's hook: `record`/`watch` on the way back, `restore` before a request goes upstream."""

    def __init__(self, kinds: dict[str, str], store: SignatureStore) -> None:
        self.kinds = kinds  # provider name → protocol
        self.store = store

    def _keeps(self, req: Request, provider: str) -> str | None:
        """The provider kind whose state to keep for this client, or None (nothing to keep, or native)."""
        kind = self.kinds.get(provider)
        origin = req.origin
        if kind not in KINDS or origin is None or origin.protocol == kind:
            return None
        return kind

    async def record(self, req: Request, content: list[Block], provider: str) -> None:
        kind = self._keeps(req, provider)
        if kind is None:  # most responses: nothing is kept for this client and provider
            return
        calls = [b for b in content if isinstance(b, ToolCall)]
        if not calls:
            return
        assert req.origin is not None
        items: dict[str, bytes] = {}
        if kind == "anthropic":
            thinking = [
                [b.text, b.signature, b.redacted]
                for b in content
                if isinstance(b, Reasoning) and _anthropic_signed(b)
            ]
            if thinking:
                value = orjson.dumps({"a": thinking})
                items = {k: value for c in calls for k in _call_keys(req.origin, kind, c)}
        else:
            items = {
                k: orjson.dumps({"g": c.signature})
                for c in calls
                if c.signature
                for k in _call_keys(req.origin, kind, c)
            }
        if items:
            await self.store.put(items)

    def watch(self, events: AsyncIterator[Event], req: Request, provider: str) -> AsyncIterator[Event]:
        """The stream itself when nothing is kept (no extra layer per event); else a pass-through that records
        its signed state before its final events reach the client."""
        if self._keeps(req, provider) is None:
            return events
        return self._watch(events, req, provider)

    async def _watch(self, events: AsyncIterator[Event], req: Request, provider: str) -> AsyncIterator[Event]:
        fold = _Fold()
        pending = True
        async for ev in events:
            if pending and isinstance(ev, (MessageDelta, MessageStop)):
                pending = False
                await self.record(req, fold.content(), provider)
            elif pending:
                fold.feed(ev)
            yield ev

    async def restore(self, req: Request, provider: str, model: str) -> Request:
        kind = self.kinds.get(provider)
        if kind not in KINDS:
            return req
        msgs = req.messages
        steps = [
            i
            for i in range(_turn_start(msgs), len(msgs))
            if msgs[i].role == "assistant" and any(isinstance(b, ToolCall) for b in msgs[i].content)
        ]
        if not steps:
            return req
        if kind == "anthropic":
            return await self._restore_anthropic(req, steps)
        return await self._restore_gemini(req, steps, model)

    async def _lookup(self, req: Request, kind: str, calls: list[ToolCall]) -> dict[str, Any]:
        """Records by each call's keys (id first), for a client whose protocol does not carry them."""
        origin = req.origin
        if origin is None or origin.protocol == kind or not calls:
            return {}
        keys = {c.id: _call_keys(origin, kind, c) for c in calls}
        found = await self.store.get([k for ks in keys.values() for k in ks])
        out: dict[str, Any] = {}
        for cid, ks in keys.items():
            raw = next((found[k] for k in ks if k in found), None)
            if raw is not None:
                try:
                    out[cid] = orjson.loads(raw)
                except orjson.JSONDecodeError:
                    continue
        return out

    async def _restore_anthropic(self, req: Request, steps: list[int]) -> Request:
        from .protocols.anthropic_render import thinking_mode

        mode = thinking_mode(req)
        if mode is None:
            return req
        msgs = list(req.messages)
        need = [i for i in steps if not any(_anthropic_signed(b) for b in msgs[i].content)]
        calls = [b for i in need for b in msgs[i].content if isinstance(b, ToolCall)]
        records = await self._lookup(req, "anthropic", calls)
        for i in need:
            thinking = _thinking_of(msgs[i], records)
            if thinking:
                msgs[i] = msgspec.structs.replace(msgs[i], content=[*thinking, *msgs[i].content])
        last = steps[-1]
        open_loop = last < len(msgs) - 1 and all(m.role == "user" for m in msgs[last + 1 :])
        if mode == "enabled" and open_loop and not any(_anthropic_signed(b) for b in msgs[last].content):
            log.info(
                "thinking off for this request: its last tool-use turn has no signed thinking to send back "
                "(model=%s)",
                req.model,
            )
            return reasoning.strip(msgspec.structs.replace(req, messages=msgs))
        return msgspec.structs.replace(req, messages=msgs) if need else req

    async def _restore_gemini(self, req: Request, steps: list[int], model: str) -> Request:
        msgs = list(req.messages)
        calls = [b for i in steps for b in msgs[i].content if isinstance(b, ToolCall) and not b.signature]
        if not calls:
            return req
        records = await self._lookup(req, "gemini", calls)
        strict = gemini3(model)
        changed = False
        for i in steps:
            content = list(msgs[i].content)
            first = True
            for j, b in enumerate(content):
                if not isinstance(b, ToolCall):
                    continue
                rec = records.get(b.id)
                sig = b.signature or (_str(rec.get("g")) if isinstance(rec, dict) else None)
                if sig is None and first and strict:
                    sig = BYPASS  # the signature is truly unknown (another model's turn, or expired)
                    log.debug("gemini: bypass signature for call %s (model=%s)", b.name, model)
                if sig != b.signature:
                    content[j] = msgspec.structs.replace(b, signature=sig)
                    changed = True
                first = False
            msgs[i] = msgspec.structs.replace(msgs[i], content=content)
        return msgspec.structs.replace(req, messages=msgs) if changed else req


def _str(v: Any) -> str | None:
    return v if isinstance(v, str) and v else None


def _thinking_of(msg: Message, records: dict[str, Any]) -> list[Reasoning]:
    for b in msg.content:
        rec = records.get(b.id) if isinstance(b, ToolCall) else None
        rows = rec.get("a") if isinstance(rec, dict) else None
        if isinstance(rows, list) and rows:
            out = [
                Reasoning(
                    text=r[0] if isinstance(r[0], str) else "", signature=_str(r[1]), redacted=_str(r[2])
                )
                for r in rows
                if isinstance(r, list) and len(r) == 3
            ]
            if out and all(_anthropic_signed(x) for x in out):
                return out
    return []


def _turn_start(messages: list[Message]) -> int:
    """Index after the last user message that is not only tool results (the current turn starts there)."""
    for i in range(len(messages) - 1, -1, -1):
        m = messages[i]
        if m.role == "user" and not any(isinstance(b, ToolResult) for b in m.content):
            return i + 1
    return 0


class _Fold:
    """The reasoning and tool-call blocks of a stream (text is not kept)."""

    def __init__(self) -> None:
        self.blocks: dict[int, Reasoning | ToolCall] = {}
        self.parts: dict[int, list[str]] = {}
        self.sigs: dict[int, list[str]] = {}

    def feed(self, ev: Event) -> None:
        if isinstance(ev, BlockStart) and isinstance(ev.block, (Reasoning, ToolCall)):
            self.blocks[ev.index], self.parts[ev.index] = ev.block, []
        elif isinstance(ev, (ReasoningDelta, ToolArgsDelta)) and ev.index in self.parts:
            self.parts[ev.index].append(ev.text if isinstance(ev, ReasoningDelta) else ev.json)
        elif isinstance(ev, SignatureDelta) and ev.index in self.blocks:
            self.sigs.setdefault(ev.index, []).append(ev.signature)

    def content(self) -> list[Block]:
        out: list[Block] = []
        for i in sorted(self.blocks):
            b, joined, sig = self.blocks[i], "".join(self.parts[i]), "".join(self.sigs.get(i, ()))
            if isinstance(b, ToolCall):
                out.append(
                    msgspec.structs.replace(
                        b, arguments=joined or b.arguments or "{}", signature=sig or b.signature
                    )
                )
            else:
                out.append(msgspec.structs.replace(b, text=b.text + joined, signature=sig or b.signature))
        return out
