"""The ASGI application: who may ask, who is asking, then the route's handler; errors in the path's shape.

It is given a route table (routes.py builds the default one from the protocols' specs). Handlers stay
HTTP-only; protocol knowledge lives in the protocol modules.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import secrets
from typing import Any

from ..config import ClientKey, Config
from ..dispatch import Dispatcher
from ..errors import ErrorKind, GatewayError, not_found
from ..observability.access import one_line
from ..observability.logs import request_id as log_request_id
from ..protocols.base import Codec, ErrorReply
from ..store import KeyRow
from ..telemetry import OPERATIONAL_PATHS, RequestRecord
from ..vkeys import is_virtual
from .access import Access
from .asgi import (
    ClientGone,
    HttpRequest,
    Receive,
    Send,
    read_body,
    send_body,
    send_empty,
    unread_body_is_large,
    with_headers,
)
from .auth import Authenticator, presented_key
from .routes import ROUTES
from .runtime import Runtime
from .table import RouteTable

log = logging.getLogger("smolgate.server")

_MAX_TRACEPARENT = 128
_SHUTDOWN = "the server is shutting down; retry the request"
# Probes and /metrics answer without a client key (load balancers and scrapers have none); /metrics takes
# the admin key instead unless observability.metrics_public.
_CLIENT_RID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")  # a client's own x-request-id, if it is this tame


def request_id(headers: dict[str, str]) -> str:
    """The client's `x-request-id` when it is a short token (logs and traces can then be joined with the
    client's), else a new one."""
    given = headers.get("x-request-id")
    if given and _CLIENT_RID.fullmatch(given):
        return given
    return "req_" + secrets.token_hex(12)


class Gateway:
    """The ASGI application."""

    def __init__(self, cfg: Config, runtime: Runtime | None = None, routes: RouteTable = ROUTES) -> None:
        self.cfg = cfg
        self.runtime = runtime or Runtime(cfg)
        self.auth = Authenticator(cfg)
        self.access = Access(cfg)
        self.routes = routes
        self._metrics_public = cfg.observability.metrics_public
        self.runtime.on_reload.append(self._reconfigure)

    def _reconfigure(self, cfg: Config) -> None:
        """A config reload (reload.py): client keys, admin key, hosts and origins from the new config."""
        self.cfg = cfg
        self.auth = Authenticator(cfg)
        self.access = Access(cfg)

    @property
    def dispatcher(self) -> Dispatcher:
        return self.runtime.dispatcher

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            if scope["type"] == "lifespan":
                await self._lifespan(receive, send)
            return
        pin = self.runtime.enter()  # this request is served by the config current now, even across a reload
        try:
            await self._http(scope, receive, send)
        finally:
            self.runtime.leave(pin)

    async def _http(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        req = HttpRequest.from_scope(scope)
        endpoint, params = self.routes.match(req.method, req.path)
        errors = endpoint.errors if endpoint is not None else self.routes.errors_for(req.path)
        h = req.headers
        rid = request_id(h)
        rec = req.record = RequestRecord(rid, req.method, req.path)
        log_request_id.set(rid)  # this request's task only: its log lines carry its id
        if (tp := h.get("traceparent")) is not None and len(tp) <= _MAX_TRACEPARENT:
            rec.traceparent = tp
        rec.headers["x-request-id"] = rid
        send = with_headers(send, rec.headers)  # read as the answer starts: the path adds its own
        task = self.runtime.drain.track()
        body_read = False
        status, kind = 200, None
        try:
            # Order matters: who may ask (Host, Origin), then who is asking (headers only), and only then
            # is the body read; an unauthenticated client never makes us read its body.
            self.access.check_host(h)
            cors = self.access.cors(h) if "origin" in h or "sec-fetch-site" in h else None
            if cors is not None:
                if req.method == "OPTIONS" and "access-control-request-method" in h:
                    await send_empty(send, 204, self.access.preflight(h, cors))
                    return
                send = with_headers(send, cors)
            if req.path.startswith("/admin/") or (req.path == "/metrics" and not self._metrics_public):
                self.auth.check_admin(h, req.client)
            if endpoint is None:
                raise not_found(f"no route for {req.method} {req.path[:200]}")
            client = vkey = None
            req.key = presented_key(endpoint.keys, h, req.query)
            if not req.path.startswith("/admin/") and req.path not in OPERATIONAL_PATHS:
                client, vkey = await self._authenticate(req)
            if req.method == "POST":
                req.body = await read_body(receive, self.cfg.server.max_body_bytes, h.get("content-length"))
            body_read = True
            release = None
            if vkey is not None and self.runtime.vkeys is not None:
                release = await self.runtime.vkeys.admit(vkey)
            elif client is not None and self.runtime.limiter:
                release = await self.runtime.limiter.acquire(client)
            try:
                await endpoint.handler(self.runtime, req, params, send, receive)
            finally:
                if release is not None:
                    await release()
        except GatewayError as exc:
            status, kind = exc.status, exc.kind.value
            # Every refusal leaves a line with its reason (messages are ours or scrubbed upstream text: no
            # secrets, no bodies); upstream-side failures at warning, the client's own mistakes at info.
            log.log(
                logging.WARNING if exc.status >= 500 else logging.INFO,
                "%s %s -> %d %s: %s (%s)",
                req.method,
                one_line(req.path),
                exc.status,
                exc.kind.value,
                one_line(exc.message, 300),
                rid,
            )
            await self.send_error(send, errors, exc, rid, close=not body_read and unread_body_is_large(h))
        except ClientGone:
            status, kind = 499, "client_gone"
            return
        except asyncio.CancelledError:
            if not self.runtime.drain.claims(task):
                raise
            # The shutdown grace period is over and this request has no answer yet: say so (a 503), rather
            # than cut the connection. (If the answer had started, sending fails and the connection closes.)
            status, kind = 503, ErrorKind.OVERLOADED.value
            with contextlib.suppress(Exception):
                await self.send_error(send, errors, GatewayError(ErrorKind.OVERLOADED, _SHUTDOWN), rid)
        except Exception:
            status, kind = 500, ErrorKind.INTERNAL.value
            log.exception("internal error handling %s %s (%s)", req.method, req.path[:200], rid)
            await self.send_error(
                send, errors, GatewayError(ErrorKind.INTERNAL, f"internal error ({rid})"), rid
            )
        finally:
            self.runtime.drain.untrack(task)
            rec.finish(status, kind)
            for observer in self.runtime.observers:
                try:
                    observer.finished(rec)
                except Exception:  # an observer's bug must not fail the request it observes
                    log.exception("observer %s failed (%s)", type(observer).__name__, rid)

    async def _authenticate(self, req: HttpRequest) -> tuple[ClientKey | None, KeyRow | None]:
        """Who is asking: a config-file key, a virtual key (`sg-…`, looked up in the store), or nobody on an
        open gateway (no config keys and no virtual keys). Sets the record's key id (never the key)."""
        key, vkeys, rec = req.key, self.runtime.vkeys, req.record
        if key and vkeys is not None and is_virtual(key) and self.auth.config_client(key) is None:
            self.auth.not_throttled(req.client)
            row = await vkeys.authenticate(key, req.client, self.auth.throttle)
            req.models = frozenset(row.models) if row.models is not None else None
            req.privacy = row.privacy
            if rec is not None:
                rec.key_id = row.id
            return None, row
        if self.auth.open and (vkeys is None or not await vkeys.any_keys()):
            return None, None
        client = self.auth.check(key, req.client, required=True)
        req.privacy = client.privacy if client is not None else None
        if rec is not None:
            rec.key_id = self.auth.key_id(client)
        return client, None

    def error_reply(self, path: str | None, exc: GatewayError) -> ErrorReply:
        """An error in the shape of the protocol `path` belongs to (for the HTTP layer's own refusals)."""
        return (self.routes.errors_for(path) if path else self.routes.default_errors).encode_error(exc)

    async def send_error(
        self, send: Send, c: Codec, exc: GatewayError, rid: str, close: bool = False
    ) -> None:
        reply = c.encode_error(exc)
        headers = dict(reply.headers)
        if close:  # we answered before reading a large body: don't read it to keep the connection
            headers["connection"] = "close"
        await send_body(send, reply.status, reply.body, "application/json", headers)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            msg = await receive()
            if msg["type"] == "lifespan.startup":
                try:
                    await self.runtime.start()
                except Exception as exc:  # report, don't crash with a trace
                    log.error("startup failed: %s", exc)
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif msg["type"] == "lifespan.shutdown":
                await self.runtime.stop()
                await send({"type": "lifespan.shutdown.complete"})
                return
