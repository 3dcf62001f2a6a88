"""A small pooled HTTP/1.1 client for upstream calls: asyncio protocol + httptools' C parser.

Why our own: the upstream client is the largest per-request cost of a gateway, and a hand-written pooled
client sustains a multiple of aiohttp's request rate (docs/performance.md; bench/gateway.py compares both in
the same run). It does exactly what the gateway needs — keep-alive pools per origin, TLS,
chunked or sized bodies streamed with back-pressure, and closing the socket to cancel an upstream
request — and nothing else. aiohttp stays available (`transport: aiohttp`), e.g. for HTTP proxies.

Safety rules (the connection is shared by clients one after another, so its framing must never be in
doubt): the request target and every header are checked by `urls` before a byte is written (no CR/LF,
space, control or non-ASCII byte can start a new header or request); the response's status line and headers
are capped (`max_header_bytes`, `_MAX_HEADERS`); and a connection goes back to the idle pool only after a
response that was read to its end, framed by exactly one Content-Length or by chunked encoding, with
keep-alive, and with nothing after it. A second response, bytes arriving while idle, a parser error, a
response read until close, one left unread — each closes the connection instead.

A request is never sent twice: an idle connection is checked just before it is written to (closed or
spoken to by the upstream while idle → skipped, a new one opened), and after the first byte is written any
failure is the caller's error, because the upstream may have received and acted on the POST.
"""

from __future__ import annotations

import asyncio
import collections
import select
import ssl
from collections.abc import Mapping
from typing import cast
from urllib.parse import urlsplit

import httptools

from .urls import check_header, check_target

_HIGH_WATER = 1 << 20  # pause reading from the upstream when this much body is buffered unread
_MAX_IDLE = 64  # idle keep-alive connections kept per origin
_MAX_HEADERS = 128  # response header lines (aiohttp's default limit too)
_BODYLESS = (204, 304)


class H1Error(ConnectionError):
    pass


class H1LimitError(H1Error):
    """The upstream's response went past a configured cap (the connection is closed)."""


class _Conn(asyncio.Protocol):
    """One upstream connection; one request at a time."""

    def __init__(self, max_header_bytes: int = 64 * 1024) -> None:
        self.transport: asyncio.Transport  # set by connection_made, before the pool ever sees this object
        self.max_header_bytes = max_header_bytes
        self.parser = httptools.HttpResponseParser(self)
        self.status = 0
        self.headers: dict[str, str] = {}
        self._body: collections.deque[bytes] = collections.deque()
        self._buffered = 0
        self._paused = False
        self._headers_done: asyncio.Future[None] | None = None
        self._wake: asyncio.Future[None] | None = None
        self._head_bytes = 0  # status line + headers received so far (until the headers are complete)
        self._nheaders = 0
        self._lengths = 0  # Content-Length headers seen
        self._began = False
        self._informational = False  # inside a 1xx response
        self._framed = False  # exactly one Content-Length, or chunked, or a status without a body
        self._got_body = False
        self._idle_bytes = 0  # bytes received after the headers that brought no body
        self.in_head = True
        self.complete = False  # the whole response has been parsed
        self.keep_alive = False
        self.doubt = False  # the framing is in doubt: never reuse this connection
        self.closed = False
        self.error: Exception | None = None

    # -- asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # a stream connection's is a Transport

    def data_received(self, data: bytes) -> None:
        if self.complete or self.doubt:  # bytes after the end of a response (or while idle): not ours
            self._abandon()
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            if self.complete:  # a second response right behind the first: deliver the first, drop the socket
                self._abandon()
            else:
                own = exc.__context__  # what one of our callbacks raised (a cap), else the parser's complaint
                self._fail(
                    own if isinstance(own, H1Error) else H1Error(f"malformed upstream response: {exc}")
                )
                self._abandon()
            return
        if self.in_head:
            self._head_bytes += len(data)
            if self._head_bytes > self.max_header_bytes:
                self._fail(H1LimitError(f"response headers larger than {self.max_header_bytes} bytes"))
                self._abandon()
        elif not self.complete:  # bytes that bring no body (trailers, chunk extensions) are capped the same
            self._idle_bytes = 0 if self._got_body else self._idle_bytes + len(data)
            self._got_body = False
            if self._idle_bytes > self.max_header_bytes:
                self._fail(H1LimitError(f"more than {self.max_header_bytes} bytes of framing without a body"))
                self._abandon()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if not self.complete and not self.in_head and not self._framed and self.error is None:
            self.complete = True  # a body framed by the close (no length, not chunked) ends here
            self._notify()
        elif not self.complete:
            self._fail(H1Error("upstream closed the connection"))

    # -- httptools callbacks
    def on_message_begin(self) -> None:
        if self._began:
            raise H1Error("more than one response to one request")
        self._began = True

    def on_header(self, name: bytes, value: bytes) -> None:
        self._nheaders += 1
        if self._nheaders > _MAX_HEADERS:
            raise H1LimitError(f"more than {_MAX_HEADERS} response headers")
        key = name.decode("latin-1").lower()
        if key == "content-length":
            self._lengths += 1
        self.headers[key] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()
        if 100 <= self.status < 200 and self.status != 101:
            self._informational = True  # 100/102/103: the real response follows (its head bytes count on)
            return
        self.in_head = False
        chunked = "chunked" in self.headers.get("transfer-encoding", "").lower()
        self._framed = (chunked != (self._lengths == 1) and self._lengths <= 1) or self.status in _BODYLESS
        # llhttp forgets keep-alive once the message completes; a body read until close is never reusable
        self.keep_alive = self.parser.should_keep_alive() and self._framed
        if self._headers_done is not None and not self._headers_done.done():
            self._headers_done.set_result(None)

    def on_body(self, body: bytes) -> None:
        self._got_body = True
        self._body.append(body)
        self._buffered += len(body)
        if self._buffered > _HIGH_WATER and not self._paused:
            self._paused = True
            self.transport.pause_reading()
        self._notify()

    def on_message_complete(self) -> None:
        if self._informational:
            self._informational = self._began = False
            self.headers, self._nheaders, self._lengths = {}, 0, 0
            return
        self.complete = True
        self._notify()

    # -- internals
    def _notify(self) -> None:
        if self._wake is not None and not self._wake.done():
            self._wake.set_result(None)

    def _fail(self, exc: Exception) -> None:
        self.error = exc
        for fut in (self._headers_done, self._wake):
            if fut is not None and not fut.done():
                fut.set_exception(exc)

    def _abandon(self) -> None:
        self.doubt = True
        self.transport.close()

    @property
    def reusable(self) -> bool:
        return self.complete and self.keep_alive and not (self.closed or self.doubt or self._body)

    def reset(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.status, self.headers, self.complete, self.error, self.keep_alive = 0, {}, False, None, False
        self._body.clear()
        self._buffered = self._head_bytes = self._nheaders = self._lengths = self._idle_bytes = 0
        self._began = self._framed = self._informational = self._got_body = False
        self.in_head = True

    async def send(self, head: bytes, body: bytes) -> None:
        loop = asyncio.get_running_loop()
        self._headers_done = loop.create_future()
        self.transport.write(head + body)
        await self._headers_done

    async def read(self) -> bytes:
        """The next body bytes; b"" once the response is complete."""
        while not self._body:
            if self.complete:
                return b""
            if self.error is not None:
                raise self.error
            self._wake = asyncio.get_running_loop().create_future()
            try:
                await self._wake
            finally:
                self._wake = None
        chunk = self._body.popleft() if len(self._body) == 1 else b"".join(self._body)
        self._body.clear()
        self._buffered = 0
        if self._paused:
            self._paused = False
            self.transport.resume_reading()
        return chunk


def _peer_spoke(conn: _Conn) -> bool:
    """Whether the upstream closed (or wrote to) an idle connection in a way the event loop has not yet
    delivered: its FIN can be in the socket's queue while `connection_lost` waits for the next loop turn."""
    transport = conn.transport
    if transport.is_closing():
        return True
    sock = transport.get_extra_info("socket")
    if sock is None:
        return False
    try:
        poller = select.poll()
        poller.register(sock.fileno(), select.POLLIN | select.POLLPRI)
        return bool(poller.poll(0))  # readable while idle: EOF, a reset, or bytes that are not ours
    except (OSError, ValueError):
        return True


class H1Response:
    def __init__(self, pool: H1Pool, conn: _Conn) -> None:
        self._pool, self._conn = pool, conn
        self.status = conn.status
        self.headers: Mapping[str, str] = conn.headers
        self._done = False

    async def read_chunk(self) -> bytes:
        chunk = await self._conn.read()
        if not chunk:
            self.release()
        return chunk

    async def read(self) -> bytes:
        parts = []
        while chunk := await self.read_chunk():
            parts.append(chunk)
        return b"".join(parts)

    def take_complete(self) -> bytes | None:
        """The whole body without waiting, if it has all arrived (a small JSON answer usually has); else None."""
        c = self._conn
        if not c.complete or c.error is not None:
            return None
        body = c._body[0] if len(c._body) == 1 else b"".join(c._body)
        c._body.clear()
        c._buffered = 0
        if c._paused:
            c._paused = False
            c.transport.resume_reading()
        self.release()
        return body

    def release(self) -> None:
        """Back to the pool when read to its end and reusable; otherwise the socket is closed."""
        if self._done:
            return
        self._done = True
        c = self._conn
        if c.reusable:
            self._pool._put(c)
        else:
            c.transport.close()  # an unfinished or doubtful response: closing is how the upstream learns we left

    def close(self) -> None:
        if not self._done:
            self._done = True
            self._conn.transport.close()


class H1Pool:
    """Keep-alive connections to one origin (scheme, host, port)."""

    def __init__(self, base_url: str, connect_timeout: float, max_header_bytes: int = 64 * 1024) -> None:
        u = urlsplit(base_url)
        self.scheme, self.host = u.scheme, u.hostname or "localhost"
        self.port = u.port or (443 if u.scheme == "https" else 80)
        self.prefix = u.path.rstrip("/")
        self.connect_timeout = connect_timeout
        self.max_header_bytes = max_header_bytes
        default_port = (u.scheme == "https" and self.port == 443) or (u.scheme == "http" and self.port == 80)
        self._host_header = (self.host if default_port else f"{self.host}:{self.port}").encode()
        self._ssl = ssl.create_default_context() if u.scheme == "https" else None
        self._idle: collections.deque[_Conn] = collections.deque()

    def _put(self, conn: _Conn) -> None:
        if len(self._idle) < _MAX_IDLE:
            self._idle.append(conn)
        else:
            conn.transport.close()

    async def _connect(self) -> _Conn:
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(self.connect_timeout):
            _, conn = await loop.create_connection(
                lambda: _Conn(self.max_header_bytes),
                self.host,
                self.port,
                ssl=self._ssl,
                server_hostname=self.host if self._ssl else None,
            )
        return conn

    def _head(self, path: str, body: bytes, headers: Mapping[str, str], query: str) -> bytes:
        """The request line and headers; raises `urls.UnsafeRequest` before anything is sent."""
        target = check_target(self.prefix + path + (("?" + query) if query else ""))
        head = [
            b"POST ",
            target.encode("ascii"),
            b" HTTP/1.1\r\nhost: ",
            self._host_header,
            b"\r\ncontent-length: ",
            str(len(body)).encode(),
            b"\r\naccept-encoding: identity\r\n",
        ]
        for k, v in headers.items():
            check_header(k, v)
            head += [k.encode("ascii"), b": ", v.encode("ascii"), b"\r\n"]
        head.append(b"\r\n")
        return b"".join(head)

    async def post(self, path: str, body: bytes, headers: Mapping[str, str], query: str = "") -> H1Response:
        raw = self._head(path, body, headers, query)
        conn = self._reusable()
        if conn is None:
            conn = await self._connect()
        try:
            await conn.send(raw, body)
        except BaseException:
            # Once written, a POST is never sent again, whatever failed (RFC 9110 §9.2.2): the upstream may
            # have acted on it. Only a connection found stale *before* writing is skipped (`_reusable`).
            conn.transport.close()
            raise
        return H1Response(self, conn)

    def _reusable(self) -> _Conn | None:
        """An idle connection still open at our end and silent from the upstream's, else None."""
        while self._idle:
            conn = self._idle.pop()
            if conn.closed or conn.doubt or _peer_spoke(conn):
                conn.transport.close()
                continue
            conn.reset()
            return conn
        return None

    def close(self) -> None:
        while self._idle:
            conn = self._idle.pop()
            conn.transport.close()
