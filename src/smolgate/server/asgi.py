"""A thin ASGI layer: request parsing, bounded body reads, plain and streaming responses.

A framework (Starlette) costs a large share of max throughput on this path (docs/performance.md) for
features we don't use; the gateway's routing is a short static table (table.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import parse_qsl

from ..errors import ErrorKind, GatewayError
from ..telemetry import RequestRecord

Send = Callable[[dict[str, Any]], Awaitable[None]]
Receive = Callable[[], Awaitable[dict[str, Any]]]

# Past this many unread body bytes an early answer (401, 413, ...) closes the connection instead of letting the
# server read and discard the rest to keep it alive (limits.py enforces the same bound).
DRAIN_BYTES = 1024 * 1024


T = TypeVar("T")


class ClientGone(Exception):
    """The client disconnected (while we read its request, or waited for its answer): nobody to answer."""


@dataclass(slots=True)
class HttpRequest:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    client: str
    body: bytes = b""
    key: str | None = None  # the client key presented, where the route's protocol reads it (auth.py)
    record: RequestRecord | None = None  # what this request did, for the ledger, metrics and logs
    models: frozenset[str] | None = None  # the models its virtual key may use; None: any (vkeys_auth.py)
    privacy: str | None = None  # its key's privacy policy (policies/privacy.py)
    tls: bool = False  # it came over HTTPS (the console's cookie is then Secure)
    actor: str = (
        "admin-api"  # who an admin call is, for the audit log: "console" when a session made it (auth.py)
    )

    @classmethod
    def from_scope(cls, scope: dict[str, Any]) -> HttpRequest:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        qs = scope.get("query_string", b"")
        query = dict(parse_qsl(qs.decode("latin-1"))) if qs else {}
        client = scope.get("client") or ("", 0)
        return cls(
            scope["method"], scope["path"], query, headers, client[0], tls=scope.get("scheme") == "https"
        )


async def read_body(receive: Receive, limit: int, declared: str | None) -> bytes:
    """The whole body, refusing more than `limit` bytes (413) without buffering past it."""
    if declared and declared.isdigit() and int(declared) > limit:
        raise GatewayError(ErrorKind.TOO_LARGE, f"request body exceeds {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    while True:
        msg = await receive()
        if msg["type"] == "http.disconnect":
            raise ClientGone
        chunk = msg.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise GatewayError(ErrorKind.TOO_LARGE, f"request body exceeds {limit} bytes")
        chunks.append(chunk)
        if not msg.get("more_body"):
            return b"".join(chunks) if len(chunks) != 1 else chunks[0]


def unread_body_is_large(headers: dict[str, str]) -> bool:
    """Whether the request announces a body too large (or of unknown size) to drain after an early answer."""
    if "transfer-encoding" in headers:
        return True
    declared = headers.get("content-length")
    return declared is not None and (not declared.isdigit() or int(declared) > DRAIN_BYTES)


def with_headers(send: Send, extra: dict[str, str]) -> Send:
    """`send` that adds `extra` to the response's headers (CORS; `RequestRecord.headers`, read when it starts)."""

    async def wrapped(msg: dict[str, Any]) -> None:
        if msg["type"] == "http.response.start" and extra:
            raw = [(k.encode(), v.encode("latin-1")) for k, v in extra.items()]
            msg = {**msg, "headers": [*msg.get("headers", ()), *raw]}
        await send(msg)

    return wrapped


async def send_empty(send: Send, status: int, headers: dict[str, str]) -> None:
    raw = [(k.encode(), v.encode("latin-1")) for k, v in headers.items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": b""})


def _raw_headers(content_type: str, extra: dict[str, str] | None) -> list[tuple[bytes, bytes]]:
    out = [(b"content-type", content_type.encode())]
    if extra:
        out.extend((k.encode(), v.encode()) for k, v in extra.items())
    return out


async def send_body(
    send: Send,
    status: int,
    body: bytes,
    content_type: str = "application/json",
    headers: dict[str, str] | None = None,
) -> None:
    await send(
        {"type": "http.response.start", "status": status, "headers": _raw_headers(content_type, headers)}
    )
    await send({"type": "http.response.body", "body": body})


class _DisconnectWatch:
    """Cancels the task that made it when the client disconnects: only a small task waits for
    `http.disconnect` (an ASGI server silently drops writes after one, so nothing else would notice)."""

    def __init__(self, receive: Receive) -> None:
        self.me = asyncio.current_task()
        self.gone = False
        self._task = asyncio.ensure_future(self._watch(receive))

    async def _watch(self, receive: Receive) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        self.gone = True
        if self.me is not None:
            self.me.cancel()

    def stop(self) -> None:
        self._task.cancel()


async def unless_gone(receive: Receive, work: Awaitable[T]) -> T:
    """`await work`, unless the client disconnects first: then `work` is cancelled and ClientGone raised.

    For the wait before an answer starts (a whole completion, or a stream's first event): a local model's long
    prefill sends nothing for a while, and without this a client that gave up went unnoticed until then.
    The work runs inline (its context stays ours); a small watcher task cancels us, as in `send_stream`.
    """
    watch = _DisconnectWatch(receive)
    try:
        return await work
    except asyncio.CancelledError:
        if not watch.gone or watch.me is None:
            raise  # cancelled from outside (shutdown): propagate
        watch.me.uncancel()
        raise ClientGone from None
    finally:
        watch.stop()


async def send_stream(
    send: Send,
    receive: Receive,
    chunks: AsyncIterator[bytes],
    content_type: str,
    headers: dict[str, str] | None = None,
) -> bool:
    """Stream `chunks`; if the client disconnects, cancel the producer (which closes the upstream).

    The producer runs inline; only a small watcher task waits for `http.disconnect` (an ASGI server
    silently drops writes after a disconnect, so nothing else would notice) and cancels us.
    Returns False when the client went away before the end.
    """
    hdrs = _raw_headers(content_type, headers)
    hdrs.append((b"cache-control", b"no-cache"))
    hdrs.append((b"x-accel-buffering", b"no"))
    watch = _DisconnectWatch(receive)
    try:
        await send({"type": "http.response.start", "status": 200, "headers": hdrs})
        async for chunk in chunks:
            if chunk:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
    except asyncio.CancelledError:
        if not watch.gone:
            raise  # cancelled from outside (shutdown): propagate
    finally:
        watch.stop()
        aclose = getattr(chunks, "aclose", None)
        if aclose is not None:
            await aclose()
    if watch.gone and watch.me is not None:
        watch.me.uncancel()
    return not watch.gone
