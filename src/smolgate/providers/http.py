"""One HTTP transport for every remote protocol, with pooled keep-alive connections.

Two interchangeable backends behind one tiny interface (`post` → response with `status`, `headers`,
`read_chunk`, `release`, `close`): our own HTTP/1.1 client (`h1`, the default — the fastest in
bench/gateway.py) and aiohttp (`transport: aiohttp`, aio.py). Every failure becomes a GatewayError here, at
one boundary, and every upstream-written message is scrubbed before it can reach a client (see `Scrubber`).

Deadlines (`timeouts`, all measured from the moment the request is sent; t0):
- `first_byte`: absolute, t0 → the response headers and, for a stream, the first canonical event. An
  upstream that drips a byte at a time (or only SSE comments) cannot hold a client's headers past it.
- `idle`: the longest a stream may go without a new canonical event (progress, not bytes: pings and
  comments don't count). An error body must also arrive within it.
- `total`: absolute, t0 → the end of the whole call, streams included: an endless stream is cut (the client
  gets its protocol's in-stream error) and the account lease is released.
- `connect`: opening the TCP/TLS connection (inside first_byte).

Caps (`limits`): a non-streaming body past `max_response_bytes`, more than `max_line_bytes` of stream with no
event (one huge SSE/NDJSON line, or endless data without a frame end), or response headers past
`max_header_bytes` end the attempt with a 502 and close the connection; buffers never grow past the cap.

A stream is complete at its terminal event (MessageStop, or an error event): what the upstream does next
(an unterminated chunked body, a dropped connection) cannot add an error to a finished answer; the
connection goes back to the pool only if the response also ended cleanly right away. Redirects are never
followed (a 3xx, like any non-2xx status that is not an error, is a 502).
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Protocol
from urllib.parse import urlencode, urlsplit

import aiohttp
import msgspec
import orjson

from ..canonical import Event, MessageStop, Request, Response, StreamError
from ..config import ConfigError, ProviderConfig
from ..console.wire import WIRE
from ..errors import ErrorKind, GatewayError
from ..protocols import PROTOCOLS
from ..protocols.spec import ProtocolSpec, Upstream
from ..secret import Redactor
from .aio import AiohttpTransport
from .base import Attempt, Provider, UpstreamResponse
from .h1 import H1Error, H1LimitError, H1Pool
from .urls import UnsafeRequest, check_headers, check_target

log = logging.getLogger("smolgate.upstream")

_TRANSPORT_ERRORS = (asyncio.TimeoutError, aiohttp.ClientError, ConnectionError, OSError)
_ERROR_BODY_CAP = 1 << 20  # an error reply is read up to this much (its message is cut to 500 chars anyway)
_DRAIN_SECONDS = 0.25  # after a stream's terminal event: how long to wait for the response's clean end
_DRAIN_BYTES = 64 * 1024
_MESSAGE_CHARS = 500  # upstream text passed to a client
_LOG_CHARS = 4000  # upstream text kept in the server log
_SCAN_CHARS = 64 * 1024  # of an upstream message, at most this much is looked at
_MAX_RETRY_AFTER = 86400.0  # seconds: an upstream's retry hint passed on is clamped to a day
_UNSAFE_CHARS = re.compile("[\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2066-\u2069\ufeff]+")


def _transport_error(exc: BaseException, provider: str, phase: str) -> GatewayError:
    if isinstance(exc, H1LimitError):
        return GatewayError(
            ErrorKind.UPSTREAM, f"provider '{provider}' sent a response over the gateway's limits ({exc})"
        )
    if isinstance(exc, (asyncio.TimeoutError, aiohttp.ServerTimeoutError)):
        return GatewayError(ErrorKind.TIMEOUT, f"provider '{provider}' timed out ({phase})")
    if isinstance(exc, (aiohttp.ClientConnectorError, ConnectionRefusedError)):
        return GatewayError(ErrorKind.UPSTREAM, f"provider '{provider}' refused the connection")
    return GatewayError(ErrorKind.UPSTREAM, f"provider '{provider}' failed ({phase}): {type(exc).__name__}")


def malformed(provider: str, exc: Exception) -> GatewayError:
    return GatewayError(
        ErrorKind.UPSTREAM, f"provider '{provider}' sent a malformed response ({type(exc).__name__})"
    )


def _over(provider: str, what: str) -> GatewayError:
    return GatewayError(ErrorKind.UPSTREAM, f"provider '{provider}' sent {what} over the gateway's limits")


class Scrubber:
    """Upstream-written text → what a client may see: every known secret of the provider (account keys,
    configured header values, and their encodings) masked, control and bidi characters removed, at most
    500 characters. The redacted detail goes to the server log."""

    def __init__(self, cfg: ProviderConfig) -> None:
        self.name = cfg.name
        values = [a.api_key.reveal() for a in cfg.accounts if a.api_key]
        values += [v.reveal() for v in cfg.headers.values()]
        self._values = values
        self._redact = Redactor(values)

    def learn(self, value: str) -> None:
        """Mask one more secret from now on (an account added at run time)."""
        self._values.append(value)
        self._redact = Redactor(self._values)

    def redact(self, text: str) -> str:
        """`text` with this provider's known secrets masked (nothing cut or cleaned)."""
        return self._redact(text)

    def text(self, text: str, limit: int = _MESSAGE_CHARS) -> str:
        clean = " ".join(_UNSAFE_CHARS.sub(" ", self._redact(text[:_SCAN_CHARS])).split())
        return clean if len(clean) <= limit else clean[: limit - 1] + "…"

    def error(self, err: GatewayError, where: str, always: bool = False) -> GatewayError:
        clean = self.text(err.message)
        if always or clean != err.message:
            log.warning("provider %s: %s: %s", self.name, where, self.text(err.message, _LOG_CHARS))
        err.message = clean
        err.args = (clean,)
        if err.param is not None:
            err.param = self.text(err.param, 100)
        if (
            err.retry_after is not None
        ):  # an upstream's number: `inf` or `nan` must not reach a client's header
            ra = err.retry_after
            err.retry_after = min(max(ra, 0.0), _MAX_RETRY_AFTER) if math.isfinite(ra) else None
        return err

    def event(self, ev: StreamError) -> StreamError:
        log.warning(
            "provider %s: in-stream error (%s): %s",
            self.name,
            ev.kind.value,
            self.text(ev.message, _LOG_CHARS),
        )
        return msgspec.structs.replace(ev, message=self.text(ev.message))


class Transport(Protocol):
    async def post(
        self, path: str, body: bytes, headers: Mapping[str, str], query: str
    ) -> UpstreamResponse: ...

    def close(self) -> Awaitable[None] | None: ...


async def _read_at(resp: UpstreamResponse, deadline: float) -> bytes:
    """The next chunk, or TimeoutError once the absolute (loop-time) deadline has passed."""
    if asyncio.get_running_loop().time() >= deadline:
        raise TimeoutError
    async with asyncio.timeout_at(deadline):
        return await resp.read_chunk()


async def _read_body(resp: UpstreamResponse, cap: int, deadline: float, provider: str) -> bytes:
    """The whole body, never holding more than `cap` bytes (+ one chunk); past it → 502, connection closed."""
    length = resp.headers.get("content-length")
    if length is not None and length.strip().isdigit() and int(length) > cap:
        resp.close()
        raise _over(provider, "a response body")
    take: Callable[[], bytes | None] | None = getattr(resp, "take_complete", None)  # h1 only
    body = take() if take is not None else None
    if body is not None and len(body) <= cap:  # all there already: no timer, no loop
        return body
    if body is not None:
        resp.close()
        raise _over(provider, "a response body")
    parts, size = [], 0
    if asyncio.get_running_loop().time() >= deadline:
        raise TimeoutError
    async with asyncio.timeout_at(deadline):  # one timer for the whole body
        while chunk := await resp.read_chunk():
            size += len(chunk)
            if size > cap:
                resp.close()
                raise _over(provider, "a response body")
            parts.append(chunk)
    return parts[0] if len(parts) == 1 else b"".join(parts)


class HttpAttempt(Attempt):
    def __init__(self, provider: HttpProvider, resp: UpstreamResponse, t0: float) -> None:
        self._provider = provider
        self._resp = resp
        self._t0 = t0
        self.status = resp.status
        self.headers = resp.headers

    async def events(self) -> AsyncIterator[Event]:
        p = self._provider
        t, cap = p.cfg.timeouts, p.cfg.limits.max_line_bytes
        loop = asyncio.get_running_loop()
        decoder = p.codec.stream_decoder()
        total_at = self._t0 + t.total
        progress_at = self._t0 + t.first_byte  # until the first event; then `idle` after each event
        phase = "no first event within timeouts.first_byte"
        pending = 0  # bytes fed without an event since: a line or frame that never ends is cut at `cap`
        terminal = False
        try:
            first = await self._json_body(min(progress_at, total_at))
            while not terminal:
                try:
                    chunk = first or await _read_at(self._resp, min(progress_at, total_at))
                except _TRANSPORT_ERRORS as exc:
                    if loop.time() >= total_at:
                        phase = "the call exceeded timeouts.total"
                    raise _transport_error(exc, p.name, phase) from exc
                first = b""
                if not chunk:
                    break
                try:
                    events = decoder.feed(chunk)
                except GatewayError:
                    raise
                except Exception as exc:
                    raise malformed(p.name, exc) from exc
                if events:  # the decoder now holds at most this chunk's unfinished tail
                    pending = 0
                    progress_at = loop.time() + t.idle
                    phase = "no stream event within timeouts.idle"
                else:
                    pending += len(chunk)
                    if pending > cap:
                        raise _over(p.name, "a stream line (or data without an event)")
                for ev in events:
                    if isinstance(ev, StreamError):
                        ev, terminal = p.scrub.event(ev), True
                    elif isinstance(ev, MessageStop):
                        terminal = True
                    yield ev
            if terminal:
                await self._drain(total_at)
                return
            for ev in decoder.close():
                yield p.scrub.event(ev) if isinstance(ev, StreamError) else ev
        except GatewayError as exc:
            raise p.scrub.error(exc, "stream") from None
        finally:
            self._resp.close()  # no-op once released to the pool

    async def _json_body(self, deadline: float) -> bytes:
        """A stream request answered 2xx with a JSON body instead of a stream (Gemini does this with an error
        object): read it whole (capped); an error object becomes the protocol's error, anything else is fed
        to the stream decoder as it is."""
        if not self.headers.get("content-type", "").startswith("application/json"):
            return b""
        p = self._provider
        try:
            body = await _read_body(self._resp, p.cfg.limits.max_response_bytes, deadline, p.name)
        except (*_TRANSPORT_ERRORS, H1Error) as exc:
            raise _transport_error(exc, p.name, "reading the response") from exc
        try:
            obj = orjson.loads(body)
        except orjson.JSONDecodeError:
            return body
        err = obj.get("error") if isinstance(obj, dict) else None
        if err is None:
            return body
        code = err.get("code") if isinstance(err, dict) else None
        raise p.codec.decode_error(
            code if isinstance(code, int) and 400 <= code < 600 else 502, body, self.headers
        )

    async def _drain(self, total_at: float) -> None:
        """After the terminal event: give the response a moment to end cleanly (then the connection can be
        reused); anything else — more data, a hang, a reset — just closes the connection, silently."""
        loop = asyncio.get_running_loop()
        try:
            extra = 0
            deadline = min(loop.time() + _DRAIN_SECONDS, total_at)
            while chunk := await _read_at(self._resp, deadline):
                extra += len(chunk)
                if extra > _DRAIN_BYTES:
                    break
        except (*_TRANSPORT_ERRORS, H1Error):
            pass
        self._resp.close()

    async def aclose(self) -> None:
        # Closing (not releasing) drops the connection: an unfinished upstream stream must stop now.
        self._resp.close()


class HttpProvider(Provider):
    def __init__(self, cfg: ProviderConfig, spec: ProtocolSpec | None = None) -> None:
        """`spec`: the protocol to speak, by default the registry's for `cfg.protocol`."""
        self.cfg = cfg
        self.name = cfg.name
        spec = spec or PROTOCOLS[cfg.protocol]
        self.protocol = spec.name
        if spec.upstream is None:
            raise ConfigError(f"provider '{cfg.name}': protocol '{spec.name}' cannot be called upstream")
        self._upstream: Upstream = spec.upstream
        self.codec = spec.codec
        self.needs_inline_images = self.codec.needs_inline_images
        self.supports_stop = self.codec.supports_stop
        self.scrub = Scrubber(cfg)
        try:
            check_headers({k: v.reveal() for k, v in cfg.headers.items()})
            check_target(urlsplit(cfg.base_url).path or "/")
        except UnsafeRequest as exc:
            raise ConfigError(f"provider '{cfg.name}': {exc}") from None
        self._transport: Transport = (
            AiohttpTransport(cfg)
            if cfg.transport == "aiohttp"
            else H1Pool(cfg.base_url, cfg.timeouts.connect, cfg.limits.max_header_bytes)
        )

    def _headers(self, api_key: str | None, extra: Mapping[str, str]) -> dict[str, str]:
        headers = {"content-type": "application/json", **self._upstream.fixed_headers}
        headers.update({k: v.reveal() for k, v in self.cfg.headers.items()})
        headers.update(extra)
        if api_key:
            headers.update(self._upstream.auth(api_key))
        return headers

    async def _send(
        self, req: Request, model: str, api_key: str | None, stream: bool
    ) -> tuple[UpstreamResponse, float]:
        """Send the request; returns the 2xx response and t0 (loop time when it was sent)."""
        loop = asyncio.get_running_loop()
        t = self.cfg.timeouts
        try:
            call = self.codec.encode_request(msgspec.structs.replace(req, stream=stream), model)
            headers, query = self._headers(api_key, call.headers), urlencode(call.query) if call.query else ""
            wire = WIRE.get()  # the console's playground capture (console/wire.py); None for everyone else
            sent = wire.sent(self, call.path, query, headers, call.body) if wire is not None else None
            t0 = loop.time()
            async with asyncio.timeout(t.first_byte):
                resp = await self._transport.post(call.path, call.body, headers, query)
            if sent is not None:
                resp = sent.tee(resp)
        except (
            UnsafeRequest
        ) as exc:  # a client-derived value (model name, beta header) that HTTP cannot carry
            raise GatewayError(
                ErrorKind.INVALID_REQUEST, f"cannot send this request upstream: {exc}"
            ) from None
        except (*_TRANSPORT_ERRORS, H1Error) as exc:
            raise _transport_error(exc, self.name, "waiting for the response headers") from exc
        if 200 <= resp.status < 300:
            return resp, t0
        if resp.status < 400:  # a redirect (never followed: it would carry our key) or a stray 1xx
            resp.close()
            raise GatewayError(
                ErrorKind.UPSTREAM,
                f"provider '{self.name}' answered HTTP {resp.status} (redirects are not followed)",
                upstream_status=502,
            )
        try:
            body = await _read_body(
                resp,
                min(_ERROR_BODY_CAP, self.cfg.limits.max_response_bytes),
                min(loop.time() + t.idle, t0 + t.total),
                self.name,
            )
        except (*_TRANSPORT_ERRORS, H1Error, GatewayError):
            body = b""
        finally:
            resp.close()
        err = self.codec.decode_error(resp.status, body, resp.headers)
        if err.kind in (ErrorKind.AUTH, ErrorKind.PERMISSION):
            # Our credentials, not the client's: say so, and don't echo the upstream's text (it quotes
            # key fragments). The pool sees the effective 401/403 (also for a Gemini 400 API_KEY_INVALID)
            # and disables the account.
            log.warning(
                "provider %s rejected an account's key (HTTP %s): %s",
                self.name,
                resp.status,
                self.scrub.text(err.message, _LOG_CHARS),
            )
            err = GatewayError(
                err.kind,
                f"provider '{self.name}' rejected the gateway's credentials (HTTP {resp.status})",
                status=502,
                upstream_status=err.upstream_status or resp.status,
            )
        else:
            err = self.scrub.error(err, f"HTTP {resp.status}", always=True)
        if err.upstream_status is None:
            err.upstream_status = resp.status
        err.upstream_headers = resp.headers
        raise err

    async def complete(
        self, req: Request, model: str, api_key: str | None
    ) -> tuple[Response, int, Mapping[str, str]]:
        resp, t0 = await self._send(req, model, api_key, stream=False)
        try:
            body = await _read_body(
                resp, self.cfg.limits.max_response_bytes, t0 + self.cfg.timeouts.total, self.name
            )
        except GatewayError:
            raise
        except (*_TRANSPORT_ERRORS, H1Error) as exc:
            resp.close()
            raise _transport_error(exc, self.name, "reading the response") from exc
        try:
            return self.codec.decode_response(body), resp.status, resp.headers
        except GatewayError as exc:
            raise self.scrub.error(exc, "response") from None
        except Exception as exc:  # a codec choking on upstream garbage is the upstream's fault
            raise malformed(self.name, exc) from exc

    async def open(self, req: Request, model: str, api_key: str | None) -> Attempt:
        resp, t0 = await self._send(req, model, api_key, stream=True)
        return HttpAttempt(self, resp, t0)

    async def aclose(self) -> None:
        closing = self._transport.close()
        if closing is not None:
            await closing
