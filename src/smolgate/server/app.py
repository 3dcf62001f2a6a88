"""Routes → codec → dispatcher. Handlers stay HTTP-only; protocol knowledge lives in the codecs.

Client-facing paths are exactly the real APIs' paths, so an SDK only needs its base URL changed.
`GET /v1/models` is shared by OpenAI, Anthropic and Gemini ≥3 clients: the caller's headers decide
which shape it gets (anthropic-version → Anthropic, a Gemini key header/query → Gemini).
"""

from __future__ import annotations

import logging
import re
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from ..canonical import Origin, Request
from ..config import Config
from ..dispatch import Dispatcher
from ..errors import ErrorKind, GatewayError, not_found
from ..protocols import codec
from ..protocols.base import Codec, ErrorReply, ModelInfo, RequestContext
from ..signatures import owner_id
from .access import Access
from .asgi import (
    ClientGone,
    HttpRequest,
    Receive,
    Send,
    read_body,
    send_body,
    send_empty,
    send_stream,
    unread_body_is_large,
    with_headers,
)
from .auth import Authenticator, presented_key
from .runtime import Runtime
from .streaming import encode_events

log = logging.getLogger("smolgate.server")

_NO_QUERY: dict[str, str] = {}

Handler = Callable[["Gateway", HttpRequest, dict[str, str], Send, Receive], Awaitable[None]]


class Gateway:
    """The ASGI application."""

    def __init__(self, cfg: Config, runtime: Runtime | None = None) -> None:
        self.cfg = cfg
        self.runtime = runtime or Runtime(cfg)
        self.auth = Authenticator(cfg)
        self.access = Access(cfg)
        self.routes: list[tuple[str, re.Pattern[str], Handler, str]] = []
        self._exact: dict[tuple[str, str], tuple[Handler, str]] = {}
        from . import routes  # registers handlers

        routes.register(self)

    def route(self, method: str, pattern: str, handler: Handler, proto: str) -> None:
        if "{" not in pattern:
            self._exact[(method, pattern)] = (handler, proto)
            return
        rx = re.compile(
            "^"
            + re.sub(r"\{(\w+)(:path)?\}", lambda m: f"(?P<{m[1]}>{'.+' if m[2] else '[^/]+'})", pattern)
            + "$"
        )
        self.routes.append((method, rx, handler, proto))

    @property
    def dispatcher(self) -> Dispatcher:
        return self.runtime.dispatcher

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            if scope["type"] == "lifespan":
                await self._lifespan(receive, send)
            return
        req = HttpRequest.from_scope(scope)
        handler, proto, params = self._match(req.method, req.path)
        rid = "req_" + secrets.token_hex(12)
        h = req.headers
        body_read = False
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
            if req.path.startswith("/admin/"):
                self.auth.check_admin(h, req.client)
            if handler is None:
                raise not_found(f"no route for {req.method} {req.path[:200]}")
            client = None
            if not self.auth.open and not req.path.startswith("/admin/"):
                query = req.query if proto == "gemini" or req.path == "/v1/models" else _NO_QUERY
                client = self.auth.check(h, query, req.client)
            if req.method == "POST":
                req.body = await read_body(receive, self.cfg.server.max_body_bytes, h.get("content-length"))
            body_read = True
            release = (
                await self.runtime.limiter.acquire(client)
                if client is not None and self.runtime.limiter
                else None
            )
            try:
                await handler(self, req, params, send, receive)
            finally:
                if release is not None:
                    await release()
        except GatewayError as exc:
            # Every refusal leaves a line with its reason (messages are ours or scrubbed upstream text: no
            # secrets, no bodies); upstream-side failures at warning, the client's own mistakes at info.
            log.log(
                logging.WARNING if exc.status >= 500 else logging.INFO,
                "%s %s -> %d %s: %s (%s)",
                req.method,
                req.path[:200],
                exc.status,
                exc.kind.value,
                exc.message[:300],
                rid,
            )
            await self.send_error(
                send, codec(proto), exc, rid, close=not body_read and unread_body_is_large(h)
            )
        except ClientGone:
            return
        except Exception:
            log.exception("internal error handling %s %s (%s)", req.method, req.path[:200], rid)
            await self.send_error(
                send, codec(proto), GatewayError(ErrorKind.INTERNAL, f"internal error ({rid})"), rid
            )

    def _match(self, method: str, path: str) -> tuple[Handler | None, str, dict[str, str]]:
        hit = self._exact.get((method, path))
        if hit is not None:
            return hit[0], hit[1], {}
        for m, rx, handler, proto in self.routes:
            if m == method:
                mt = rx.match(path)
                if mt:
                    return handler, proto, mt.groupdict()
        return None, self.protocol_of(path), {}

    def protocol_of(self, path: str) -> str:
        """The protocol whose error shape a request to `path` gets, whatever its method."""
        for (_, p), (_, proto) in self._exact.items():
            if p == path:
                return proto
        for _, rx, _, proto in self.routes:
            if rx.match(path):
                return proto
        return (
            "ollama"
            if path.startswith("/api/")
            else "anthropic"
            if path.startswith("/v1/messages")
            else "openai"
        )

    def error_reply(self, path: str | None, exc: GatewayError) -> ErrorReply:
        """An error in the shape of the protocol `path` belongs to (for the HTTP layer's own refusals)."""
        return codec(self.protocol_of(path) if path else "openai").encode_error(exc)

    async def send_error(
        self, send: Send, c: Codec, exc: GatewayError, rid: str, close: bool = False
    ) -> None:
        reply = c.encode_error(exc)
        headers = {"x-request-id": rid, **reply.headers}
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

    # ------------------------------------------------------------------ shared handler bodies

    async def chat(
        self, c: Codec, req: HttpRequest, params: dict[str, str], send: Send, receive: Receive
    ) -> None:
        """The common path of every generation endpoint: decode → dispatch → encode."""
        ctx = RequestContext(params, req.query, req.headers)
        canon = c.decode_request(req.body, ctx)
        self.runtime.router.check_name(canon.model)
        # who asks, for state kept across turns (signatures.py): the protocol and a hash of the client key
        key = presented_key(req.headers, req.query if c.name == "gemini" else _NO_QUERY)
        canon.origin = Origin(protocol=c.name, owner=owner_id(key))
        if not canon.stream:
            resp = await self.dispatcher.complete(canon)
            await send_body(send, 200, c.encode_response(resp, canon))
            return
        events = self.dispatcher.stream(canon)
        first = await anext(events)  # errors before the first event become a normal error response
        await send_stream(send, receive, self._encode(c, canon, first, events), c.stream_media_type)

    async def _encode(
        self, c: Codec, canon: Request, first: Any, events: AsyncIterator[Any]
    ) -> AsyncIterator[bytes]:
        enc = c.stream_encoder(canon)
        async for chunk in encode_events(enc, first, events):
            yield chunk
        yield enc.close()

    def model_infos(self) -> list[ModelInfo]:
        return self.runtime.model_infos()
