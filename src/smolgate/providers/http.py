"""One HTTP transport for every remote protocol, with pooled keep-alive connections.

Two interchangeable backends behind one tiny interface (`post` → response with `status`, `headers`,
`read_chunk`, `read`, `release`, `close`): our own HTTP/1.1 client (`h1`, the default — the fastest in
bench/gateway.py) and aiohttp (`transport: aiohttp`, e.g. to honour HTTP(S)_PROXY). Timeouts: connect,
first byte (headers and, for streams, the first chunk), idle between chunks, and a total cap. Every
transport failure becomes a GatewayError here, at one boundary.
"""

from __future__ import annotations

import asyncio
from typing import Any, AsyncIterator, Mapping
from urllib.parse import urlencode

import aiohttp
import msgspec

from ..canonical import Event, Request, Response
from ..config import ProviderConfig
from ..errors import ErrorKind, GatewayError
from ..protocols import codec as get_codec
from .base import Attempt, Provider
from .h1 import H1Error, H1Pool

_AUTH_STYLE = {
    "openai": lambda key: {"authorization": f"Bearer {key}"},
    "openai-responses": lambda key: {"authorization": f"Bearer {key}"},
    "ollama": lambda key: {"authorization": f"Bearer {key}"},
    "anthropic": lambda key: {"x-api-key": key},
    "gemini": lambda key: {"x-goog-api-key": key},
}
_FIXED_HEADERS = {"anthropic": {"anthropic-version": "2023-06-01"}}
_TRANSPORT_ERRORS = (asyncio.TimeoutError, aiohttp.ClientError, ConnectionError, OSError)


def _transport_error(exc: BaseException, provider: str, phase: str) -> GatewayError:
    if isinstance(exc, (asyncio.TimeoutError, aiohttp.ServerTimeoutError)):
        return GatewayError(ErrorKind.TIMEOUT, f"provider '{provider}' timed out ({phase})")
    if isinstance(exc, (aiohttp.ClientConnectorError, ConnectionRefusedError)):
        return GatewayError(ErrorKind.UPSTREAM, f"provider '{provider}' refused the connection")
    return GatewayError(ErrorKind.UPSTREAM, f"provider '{provider}' failed ({phase}): {type(exc).__name__}")


def malformed(provider: str, exc: Exception) -> GatewayError:
    return GatewayError(ErrorKind.UPSTREAM, f"provider '{provider}' sent a malformed response ({type(exc).__name__})")


class _AiohttpResponse:
    """aiohttp's response behind the same small interface as `h1.H1Response`."""

    def __init__(self, resp: aiohttp.ClientResponse) -> None:
        self._resp, self.status, self.headers = resp, resp.status, resp.headers

    async def read_chunk(self) -> bytes:
        return await self._resp.content.readany()

    async def read(self) -> bytes:
        try:
            return await self._resp.read()
        finally:
            self._resp.release()

    def release(self) -> None:
        self._resp.release()

    def close(self) -> None:
        self._resp.close()


class _AiohttpTransport:
    def __init__(self, cfg: ProviderConfig) -> None:
        self._cfg = cfg
        self._base = cfg.base_url.rstrip("/")
        self._session: aiohttp.ClientSession | None = None

    async def post(self, path: str, body: bytes, headers: Mapping[str, str], query: str) -> _AiohttpResponse:
        if self._session is None or self._session.closed:
            t = self._cfg.timeouts
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0, ttl_dns_cache=300, keepalive_timeout=30),
                timeout=aiohttp.ClientTimeout(total=t.total, sock_connect=t.connect),
                skip_auto_headers=("User-Agent",), trust_env=True)
        url = self._base + path + (("?" + query) if query else "")
        return _AiohttpResponse(await self._session.post(url, data=body, headers=headers))

    def close(self) -> Any:
        return self._session.close() if self._session is not None else None


class HttpAttempt(Attempt):
    def __init__(self, provider: "HttpProvider", resp: Any) -> None:
        self._provider = provider
        self._resp = resp
        self.status = resp.status
        self.headers = resp.headers

    async def events(self) -> AsyncIterator[Event]:
        p = self._provider
        decoder = p.codec.stream_decoder()
        idle, first = p.cfg.timeouts.idle, p.cfg.timeouts.first_byte
        got_any = False
        try:
            while True:
                try:
                    async with asyncio.timeout(idle if got_any else first):
                        chunk = await self._resp.read_chunk()
                except _TRANSPORT_ERRORS as exc:
                    raise _transport_error(exc, p.name, "reading the stream") from exc
                if not chunk:
                    break
                got_any = True
                try:
                    events = decoder.feed(chunk)
                except GatewayError:
                    raise
                except Exception as exc:
                    raise malformed(p.name, exc) from exc
                for ev in events:
                    yield ev
            for ev in decoder.close():
                yield ev
        finally:
            self._resp.close()

    async def aclose(self) -> None:
        # Closing (not releasing) drops the connection: an unfinished upstream stream must stop now.
        self._resp.close()


class HttpProvider(Provider):
    def __init__(self, cfg: ProviderConfig) -> None:
        self.cfg = cfg
        self.name = cfg.name
        self.codec = get_codec(cfg.protocol)
        self.needs_inline_images = self.codec.needs_inline_images
        self.supports_stop = self.codec.supports_stop
        self._transport: Any = (_AiohttpTransport(cfg) if cfg.transport == "aiohttp"
                                else H1Pool(cfg.base_url, cfg.timeouts.connect))

    def _headers(self, api_key: str | None, extra: Mapping[str, str]) -> dict[str, str]:
        headers = {"content-type": "application/json", **_FIXED_HEADERS.get(self.cfg.protocol, {})}
        headers.update({k: v.reveal() for k, v in self.cfg.headers.items()})
        headers.update(extra)
        if api_key:
            headers.update(_AUTH_STYLE[self.cfg.protocol](api_key))
        return headers

    async def _send(self, req: Request, model: str, api_key: str | None, stream: bool) -> Any:
        call = self.codec.encode_request(msgspec.structs.replace(req, stream=stream), model)
        try:
            async with asyncio.timeout(self.cfg.timeouts.first_byte):
                resp = await self._transport.post(call.path, call.body, self._headers(api_key, call.headers),
                                                  urlencode(call.query) if call.query else "")
        except (*_TRANSPORT_ERRORS, H1Error) as exc:
            raise _transport_error(exc, self.name, "connecting") from exc
        if resp.status >= 400:
            try:
                async with asyncio.timeout(self.cfg.timeouts.idle):
                    body = await resp.read()
            except _TRANSPORT_ERRORS:
                body = b""
            finally:
                resp.release()
            err = self.codec.decode_error(resp.status, body, resp.headers)
            if resp.status in (401, 403):
                # Our credentials, not the client's: say so, and don't echo the upstream's text (it quotes
                # key fragments). The pool still sees the 401/403 and disables the account.
                err = GatewayError(ErrorKind.UPSTREAM, f"provider '{self.name}' rejected the gateway's "
                                   f"credentials (HTTP {resp.status})")
            err.upstream_status = resp.status
            err.upstream_headers = resp.headers
            raise err
        return resp

    async def complete(self, req: Request, model: str, api_key: str | None) -> tuple[Response, int, Mapping[str, str]]:
        resp = await self._send(req, model, api_key, stream=False)
        try:
            async with asyncio.timeout(self.cfg.timeouts.total):
                body = await resp.read()
        except _TRANSPORT_ERRORS as exc:
            resp.close()
            raise _transport_error(exc, self.name, "reading the response") from exc
        try:
            return self.codec.decode_response(body), resp.status, resp.headers
        except GatewayError:
            raise
        except Exception as exc:  # a codec choking on upstream garbage is the upstream's fault
            raise malformed(self.name, exc) from exc

    async def open(self, req: Request, model: str, api_key: str | None) -> Attempt:
        return HttpAttempt(self, await self._send(req, model, api_key, stream=True))

    async def aclose(self) -> None:
        closing = self._transport.close()
        if closing is not None:
            await closing
