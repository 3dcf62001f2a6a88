"""uvicorn's httptools protocol with the limits it lacks, so one client cannot exhaust the server.

uvicorn + httptools buffer a request line and headers of any size, wait forever for them and for a body, and
accept every connection until file descriptors run out. This subclass adds, per connection:

- header bytes (request line + headers) past `max_header_bytes` → 431; more than `max_headers` → 431;
  a URL past `max_url_bytes` → 414 (counted before bytes reach the parser, so nothing big is buffered);
- request line and headers not complete within `header_timeout` of the first byte (or of the connection,
  if nothing came) → 408 (silent close if nothing came at all); body not complete within `body_timeout`
  of the headers → 408;
- a client that stops reading our answer for `body_timeout` → the connection is dropped (it would otherwise
  hold an upstream account lease forever);
- an upgrade request (WebSocket, h2c) is answered over HTTP/1.1 and the connection then closed;
- past `max_connections` open connections a new one gets a 503 and is closed at once, so held-open
  connections cannot use up descriptors; after an early answer at most `DRAIN_BYTES` of the unread body are
  read (and discarded) before the connection is closed instead; at most `MAX_PIPELINE` queued requests.

Every refusal closes the connection and is rendered in the protocol shape of the requested path. Deadlines are
plain timestamps checked by one sweep per server every fraction of a second, which costs a request two clock
reads instead of three timer operations.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, ClassVar

import httptools
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from ..config import ServerConfig
from ..errors import ErrorKind, GatewayError
from ..protocols.base import ErrorReply
from .asgi import DRAIN_BYTES

MAX_PIPELINE = 16  # requests a client may queue on one connection behind the one being answered

Render = Callable[[str | None, GatewayError], ErrorReply]


@dataclass(frozen=True, slots=True)
class Limits:
    max_header_bytes: int
    max_headers: int
    max_url_bytes: int
    header_timeout: float
    body_timeout: float
    max_connections: int

    @classmethod
    def from_config(cls, s: ServerConfig, max_connections: int | None = None) -> Limits:
        return cls(
            s.max_header_bytes,
            s.max_headers,
            s.max_url_bytes,
            s.header_timeout,
            s.body_timeout,
            max_connections if max_connections is not None else s.max_connections,
        )

    @property
    def sweep_interval(self) -> float:
        return min(1.0, max(0.05, min(self.header_timeout, self.body_timeout) / 4))


class _Refused(Exception):
    """Raised from a parser callback to stop parsing; the reason is in `LimitedProtocol._reject`."""


def protocol_class(limits: Limits, render: Render) -> type[LimitedProtocol]:
    """A protocol class for one server (its limits, its error renderer, its own deadline sweep)."""
    return type(
        "GatewayHttpProtocol",
        (LimitedProtocol,),
        {"limits": limits, "render": staticmethod(render), "_sweeper": None},
    )


class LimitedProtocol(HttpToolsProtocol):
    limits: ClassVar[Limits]
    render: ClassVar[Render]
    _sweeper: ClassVar[asyncio.TimerHandle | None]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.url = b""
        self._in_headers = True  # between requests or reading a request line / headers
        self._in_body = False
        self._head_bytes = 0
        self._n_headers = 0
        self._deadline = 0.0  # header or body deadline (loop time); 0: none
        self._write_deadline = 0.0
        self._reject: GatewayError | None = None
        self._drained = 0
        self._dead = False  # refused: ignore further input

    # ---- connection

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]  # as uvicorn narrows it
        if len(self.server_state.connections) >= self.limits.max_connections:
            self.transport = transport
            self._dead = True
            transport.write(
                self._reply(
                    GatewayError(
                        ErrorKind.OVERLOADED,
                        "the gateway has too many open connections; retry shortly",
                        retry_after=1,
                    )
                )
            )
            transport.close()
            return
        super().connection_made(transport)
        self._deadline = self.loop.time() + self.limits.header_timeout
        if type(self)._sweeper is None:
            self._schedule_sweep()

    def connection_lost(self, exc: Exception | None) -> None:
        self._deadline = self._write_deadline = 0.0
        if self._dead and self.flow is None:  # refused at connect: uvicorn never saw it
            return
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._dead:
            return
        self._unset_keepalive_if_required()
        limit = self.limits.max_header_bytes
        while self._in_headers:  # feed header bytes only up to the allowance; past it without an end: 431
            room = limit - self._head_bytes
            if len(data) <= room:
                self._head_bytes += len(data)
                break
            head, data = data[:room], data[room:]
            self._head_bytes = limit
            if not self._feed(head) or self._dead:
                return
            if self._in_headers and self._head_bytes >= limit:  # (a request that ended in `head` resets it)
                self._refuse(
                    GatewayError(
                        ErrorKind.INVALID_REQUEST, f"request headers exceed {limit} bytes", status=431
                    )
                )
                return
        self._feed(data)

    def _feed(self, data: bytes) -> bool:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            # We speak no upgraded protocol (WebSocket, h2c): the request is answered over HTTP/1.1, and as the
            # parser takes nothing after an upgrade, the connection closes after that answer.
            self._dead = True
            cycle = self.cycle
            if cycle is None or cycle.response_complete:
                self.transport.close()
            else:
                cycle.keep_alive = False
        except httptools.HttpParserError:
            err = self._reject or GatewayError(ErrorKind.INVALID_REQUEST, "malformed HTTP request")
            self._refuse(err)
            return False
        return True

    # ---- parser callbacks

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._n_headers = 0
        self._in_headers = True
        if not self._deadline:
            self._deadline = self.loop.time() + self.limits.header_timeout

    def on_url(self, url: bytes) -> None:
        self.url += url
        if len(self.url) > self.limits.max_url_bytes:
            self._stop(
                GatewayError(
                    ErrorKind.INVALID_REQUEST,
                    f"request URL exceeds {self.limits.max_url_bytes} bytes",
                    status=414,
                )
            )

    def on_header(self, name: bytes, value: bytes) -> None:
        self._n_headers += 1
        if self._n_headers > self.limits.max_headers:
            self._stop(
                GatewayError(
                    ErrorKind.INVALID_REQUEST,
                    f"more than {self.limits.max_headers} request headers",
                    status=431,
                )
            )
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_headers = False
        self._in_body = True
        self._drained = 0
        self._deadline = self.loop.time() + self.limits.body_timeout
        super().on_headers_complete()
        if len(self.pipeline) > MAX_PIPELINE:  # a flood of queued requests: drop the connection
            self._dead = True
            self.transport.close()
            raise _Refused

    def on_body(self, body: bytes) -> None:
        cycle = self.cycle
        if cycle is not None and cycle.response_complete:  # answered early: discard, up to a bound
            self._drained += len(body)
            if self._drained > DRAIN_BYTES:
                self._refuse(None)
            return
        super().on_body(body)

    def on_message_complete(self) -> None:
        self._in_body = False
        self._in_headers = True
        self._head_bytes = 0
        self._deadline = 0.0
        super().on_message_complete()

    # ---- write side

    def pause_writing(self) -> None:
        super().pause_writing()
        self._write_deadline = self.loop.time() + self.limits.body_timeout

    def resume_writing(self) -> None:
        self._write_deadline = 0.0
        super().resume_writing()

    # ---- deadlines

    def _schedule_sweep(self) -> None:
        cls = type(self)
        cls._sweeper = self.loop.call_later(
            self.limits.sweep_interval, cls._sweep, self.loop, self.server_state.connections
        )

    @classmethod
    def _sweep(cls, loop: asyncio.AbstractEventLoop, connections: Iterable[object]) -> None:
        now = loop.time()
        for conn in list(connections):
            if isinstance(conn, LimitedProtocol):
                conn._expire(now)
        cls._sweeper = (
            loop.call_later(cls.limits.sweep_interval, cls._sweep, loop, connections) if connections else None
        )

    def _expire(self, now: float) -> None:
        if self._write_deadline and now > self._write_deadline:
            self._dead = True
            self._write_deadline = 0.0
            self.transport.abort()  # it stopped reading: close() would wait for a flush that never comes
        elif self._deadline and now > self._deadline:
            if self._in_body:
                self._refuse(
                    GatewayError(
                        ErrorKind.TIMEOUT,
                        f"request body not received within {self.limits.body_timeout:g} s",
                        status=408,
                    )
                )
            elif self._head_bytes == 0 and not self.url:
                self._refuse(None)  # connected and sent nothing: just close
            else:
                self._refuse(
                    GatewayError(
                        ErrorKind.TIMEOUT,
                        f"request headers not received within {self.limits.header_timeout:g} s",
                        status=408,
                    )
                )

    # ---- refusing

    def _stop(self, err: GatewayError) -> None:
        self._reject = err
        raise _Refused

    def _refuse(self, err: GatewayError | None) -> None:
        """Answer `err` (None: no answer) and close; never in the middle of another answer."""
        self._deadline = 0.0
        if self._dead or self.transport.is_closing():
            return
        self._dead = True
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            if self._in_body and not cycle.response_started:
                cycle.disconnected = True  # the app waits for a body that will not come: we answer instead
                cycle.message_event.set()
            else:  # an answer is under way: let it finish, then close
                cycle.keep_alive = False
                self.transport.pause_reading()
                return
        elif self._in_body:
            err = None  # its answer went out already; the rest of its body is not worth waiting for
        if err is not None:
            self.transport.write(self._reply(err))
        self.transport.close()

    def _reply(self, err: GatewayError) -> bytes:
        path = None
        if self.url:
            raw = self.url.split(b"?", 1)[0][:512]
            path = raw.decode("latin-1") if raw.startswith(b"/") else None
        try:
            rep = type(self).render(path, err)
        except Exception:  # a renderer bug must not leave the client hanging
            rep = ErrorReply(err.status, b'{"error":{"message":"request refused"}}')
        head = [
            STATUS_LINE[rep.status],
            b"content-type: application/json\r\n",
            b"content-length: %d\r\n" % len(rep.body),
            b"connection: close\r\n",
        ]
        head += [f"{k}: {v}\r\n".encode("latin-1") for k, v in rep.headers.items()]
        return b"".join(head) + b"\r\n" + rep.body
