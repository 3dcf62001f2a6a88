"""The one place a uvicorn server for the gateway is configured: `smolgate serve` and the tests use it alike."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import resource
import socket
from collections.abc import Iterator
from typing import Literal

import uvicorn

from .app import Gateway
from .limits import Limits, protocol_class

log = logging.getLogger("smolgate")

_FD_RESERVE = 256  # descriptors kept for upstream connections, files, logs
DRAIN_MARGIN = 3.0  # seconds after the grace period for the ended requests to send their last bytes


def raise_fd_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit (as far as it goes); returns the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    if soft != resource.RLIM_INFINITY and soft < want:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
            soft = want
        except (ValueError, OSError):
            pass
    return soft if soft != resource.RLIM_INFINITY else 1 << 20


def connection_cap(configured: int, fd_soft: int) -> int:
    """`server.max_connections`, lowered so client connections can never use the last descriptors."""
    room = max(16, fd_soft - max(_FD_RESERVE, fd_soft // 4))
    if configured > room:
        log.warning(
            "server.max_connections %d lowered to %d: only %d file descriptors are allowed",
            configured,
            room,
            fd_soft,
        )
        return room
    return configured


def bind_socket(host: str, port: int) -> socket.socket:
    """A socket bound to host:port (not yet listening; uvicorn listens on it), so that a port in use is found
    before the model loads. Raises OSError (EADDRINUSE, EADDRNOTAVAIL, …) or socket.gaierror."""
    family, kind, proto, _, addr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does: restarts need no wait
        sock.bind(addr)  # a port another server listens on fails here (SO_REUSEADDR does not share it)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def uvicorn_config(
    app: Gateway,
    host: str,
    port: int,
    *,
    loop: Literal["uvloop", "asyncio", "auto"] = "uvloop",
    ssl_certfile: str | None = None,
    ssl_keyfile: str | None = None,
    log_level: str = "warning",
) -> uvicorn.Config:
    """uvicorn settings for `app`: its limits protocol, keep-alive timeout and connection cap from the config."""
    s = app.cfg.server
    cap = connection_cap(s.max_connections, raise_fd_limit())
    http = protocol_class(Limits.from_config(s, cap), app.error_reply)
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        loop=loop,
        http=http,
        ws="none",
        lifespan="on",
        log_config=None,
        log_level=log_level,
        access_log=False,
        timeout_keep_alive=s.keepalive_timeout,  # type: ignore[arg-type]  # a float works
        # uvicorn's own check runs after the headers and also counts in-flight requests: a backstop above the
        # connection cap, which the protocol enforces at accept.
        limit_concurrency=cap + 1,
        # The drain (Server.shutdown) ends what is left after shutdown_grace; uvicorn's own hard stop only
        # comes DRAIN_MARGIN later, so those requests can still write their error and close.
        timeout_graceful_shutdown=app.cfg.shutdown_grace + DRAIN_MARGIN,  # type: ignore[arg-type]
        ssl_certfile=ssl_certfile,
        ssl_keyfile=ssl_keyfile,
    )


class Server(uvicorn.Server):
    """uvicorn's server with the gateway's graceful shutdown.

    On SIGTERM or Ctrl-C it stops accepting and lets the requests in flight finish for `shutdown_grace`
    seconds; then the drain ends the rest (streams with their protocol's in-stream error, unanswered requests
    with a 503) and the process exits with status 0. A second Ctrl-C stops at once (uvicorn's force exit).
    """

    def __init__(self, config: uvicorn.Config, app: Gateway) -> None:
        super().__init__(config)
        self.gateway = app

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started and self.servers and self.servers[0].sockets:
            host, port = self.servers[0].sockets[0].getsockname()[:2]
            shown = f"[{host}]" if ":" in host else host
            scheme = "https" if self.config.ssl_certfile else "http"
            log.info("smolgate listening on %s://%s:%d", scheme, shown, port)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        drain = self.gateway.runtime.drain
        drain.begin()
        grace = self.gateway.cfg.shutdown_grace
        timer = asyncio.get_running_loop().call_later(grace, drain.end)
        try:
            await super().shutdown(sockets)
        finally:
            timer.cancel()

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        with super().capture_signals():
            yield
            # The signal asked for the stop that just completed: uvicorn would raise it again now (a
            # KeyboardInterrupt traceback for Ctrl-C, death by SIGTERM): the shutdown was clean, exit 0.
            self._captured_signals.clear()
