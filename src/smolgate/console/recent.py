"""This replica's recent requests for `GET /admin/requests`: an observer (telemetry.py) keeping a bounded ring of
finished `RequestRecord`s, newest last, shaped into `RequestView`s only when someone asks: every request pays
one deque append (~0.5 µs), not the view's construction (~4–7 µs measured). The records are plain data, done
with once `finished` runs. Bodies are kept only with `console.log_bodies`, each cut to 64 KiB; the app hands
them over through a `BodyTap` (only then is any response byte copied)."""

from __future__ import annotations

import collections
import itertools
import logging
from collections.abc import Callable
from typing import Any

import msgspec

from ..server.asgi import Send
from ..telemetry import OPERATIONAL_PATHS, RequestRecord

log = logging.getLogger("smolgate.console")
BODY_CAP = 64 * 1024


class UsageView(msgspec.Struct, kw_only=True, frozen=True, gc=False):
    input_tokens: int
    output_tokens: int
    cached_tokens: int
    cache_write_tokens: int
    reasoning_tokens: int


class AttemptView(msgspec.Struct, kw_only=True, frozen=True, gc=False):
    provider: str
    account: str | None
    upstream_model: str
    upstream_protocol: str
    start: float
    end: float | None
    status: int | None
    error_kind: str | None


class Bodies(msgspec.Struct, kw_only=True, frozen=True, gc=False):
    request: str  # as text (undecodable bytes replaced); cut to 64 KiB
    response: str
    truncated: bool  # either was cut


class RequestView(msgspec.Struct, kw_only=True, omit_defaults=True, gc=False):
    request_id: str
    ts: float
    method: str
    path: str
    client_protocol: str | None
    alias: str | None
    key_id: str | None
    status: int
    error_kind: str | None
    stream: bool
    latency_ms: float
    ttft_ms: float | None
    usage: UsageView | None
    cost_usd: float | None
    attempts: tuple[AttemptView, ...]
    bodies: Bodies | None = None  # only with console.log_bodies


def view(rec: RequestRecord, bodies: Bodies | None = None) -> RequestView:
    u = rec.usage
    return RequestView(
        request_id=rec.request_id,
        ts=rec.ts,
        method=rec.method,
        path=rec.path[:500],
        client_protocol=rec.client_protocol,
        alias=rec.alias,
        key_id=rec.key_id,
        status=rec.status,
        error_kind=rec.error_kind,
        stream=rec.stream,
        latency_ms=round(rec.latency_ms, 3),
        ttft_ms=round(rec.ttft_ms, 3) if rec.ttft_ms is not None else None,
        usage=UsageView(
            input_tokens=u.input_tokens,
            output_tokens=u.output_tokens,
            cached_tokens=u.cached_tokens,
            cache_write_tokens=u.cache_creation_tokens,
            reasoning_tokens=u.reasoning_tokens,
        )
        if u is not None
        else None,
        cost_usd=rec.cost_usd,
        attempts=tuple(
            AttemptView(
                provider=a.provider,
                account=a.account,
                upstream_model=a.upstream_model,
                upstream_protocol=a.upstream_protocol,
                start=a.start,
                end=a.end,
                status=a.status,
                error_kind=a.error_kind,
            )
            for a in rec.attempts
        ),
        bodies=bodies,
    )


def _text(raw: bytes) -> str:
    return raw[:BODY_CAP].decode("utf-8", "replace")


class BodyTap:
    """Copies up to 64 KiB of one response's body as it is sent (console.log_bodies)."""

    __slots__ = ("_parts", "_size", "truncated")

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self._size = 0
        self.truncated = False

    def wrap(self, send: Send) -> Send:
        async def tapped(msg: dict[str, Any]) -> None:
            if msg["type"] == "http.response.body" and (chunk := msg.get("body")):
                room = BODY_CAP - self._size
                if room > 0:
                    self._parts.append(chunk[:room])
                    self._size += min(room, len(chunk))
                self.truncated |= len(chunk) > room
            await send(msg)

        return tapped

    def bodies(self, request: bytes) -> Bodies:
        return Bodies(
            request=_text(request),
            response=_text(b"".join(self._parts)),
            truncated=self.truncated or len(request) > BODY_CAP,
        )


class RecentRequests:
    """The observer: one entry per finished request (generations and refusals alike; the gateway's own
    operational and admin traffic is left out), at most `capacity`, oldest dropped first."""

    def __init__(self, capacity: int, cost: Callable[[RequestRecord], float]) -> None:
        self._cost = cost  # the runtime's: priced once per request (memoised on the record), as the ledger
        self._ring: collections.deque[tuple[RequestRecord, Bodies | None]] = collections.deque(
            maxlen=max(capacity, 1)
        )
        self.capacity = capacity
        self._bodies: dict[str, Bodies] = {}  # handed over by the app just before `finished`

    def with_bodies(self, request_id: str, bodies: Bodies) -> None:
        self._bodies[request_id] = bodies

    def finished(self, rec: RequestRecord) -> None:
        bodies = self._bodies.pop(rec.request_id, None)
        if not self.capacity or rec.path in OPERATIONAL_PATHS or rec.path.startswith(("/admin/", "/ui")):
            return
        self._ring.append((rec, bodies))

    def latest(self, limit: int) -> list[RequestView]:
        """Newest first."""
        return [self._view(rec, b) for rec, b in itertools.islice(reversed(self._ring), limit)]

    def get(self, request_id: str) -> RequestView | None:
        return next((self._view(r, b) for r, b in reversed(self._ring) if r.request_id == request_id), None)

    def _view(self, rec: RequestRecord, bodies: Bodies | None) -> RequestView:
        if rec.generation and rec.cost_usd is None:  # priced already when the ledger is on (memoised)
            try:
                self._cost(rec)
            except Exception:  # a price lookup must not lose the view (the ledger logs the same failure)
                log.debug("no cost for %s", rec.request_id)
        return view(rec, bodies)
