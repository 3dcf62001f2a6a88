"""One HTTP transport for every remote protocol (aiohttp, pooled keep-alive connections).

aiohttp over httpx: on this hardware it sustains ~7× the request rate (see bench/gateway.py and
cpu-baselines.md). Timeouts: connect, first byte (headers and, for streams, the first chunk), idle
between chunks, and a total cap. Every transport failure becomes a GatewayError here, at one boundary.
"""

from __future__ import annotations

import asyncio
from typing import AsyncIterator, Mapping

import aiohttp
import msgspec

from ..canonical import Event, Request, Response
from ..config import ProviderConfig
from ..errors import ErrorKind, GatewayError
from ..protocols import codec as get_codec
from .base import Attempt, Provider

_AUTH_STYLE = {
    "openai": lambda key: {"authorization": f"Bearer {key}"},
    "openai-responses": lambda key: {"authorization": f"Bearer {key}"},
    "ollama": lambda key: {"authorization": f"Bearer {key}"},
    "anthropic": lambda key: {"x-api-key": key},
    "gemini": lambda key: {"x-goog-api-key": key},
}
_FIXED_HEADERS = {
    "anthropic": {"anthropic-version": "2023-06-01"},
}


def _transport_error(exc: BaseException, provider: str, phase: str) -> GatewayError:
    if isinstance(exc, (asyncio.TimeoutError, aiohttp.ServerTimeoutError)):
        return GatewayError(ErrorKind.TIMEOUT, f"provider '{provider}' timed out ({phase})")
    if isinstance(exc, aiohttp.ClientConnectorError):
        return GatewayError(ErrorKind.UPSTREAM, f"provider '{provider}' refused the connection")
    return GatewayError(ErrorKind.UPSTREAM, f"provider '{provider}' failed ({phase}): {type(exc).__name__}")


class HttpAttempt(Attempt):
    def __init__(self, provider: "HttpProvider", resp: aiohttp.ClientResponse) -> None:
        self._provider = provider
        self._resp = resp
        self.status = resp.status
        self.headers = resp.headers

    async def events(self) -> AsyncIterator[Event]:
        decoder = self._provider.codec.stream_decoder()
        idle = self._provider.cfg.timeouts.idle
        first = self._provider.cfg.timeouts.first_byte
        content = self._resp.content
        got_any = False
        try:
            while True:
                try:
                    async with asyncio.timeout(idle if got_any else first):
                        chunk = await content.readany()
                except (asyncio.TimeoutError, aiohttp.ClientError, ConnectionError) as exc:
                    raise _transport_error(exc, self._provider.name, "reading the stream") from exc
                if not chunk:
                    break
                got_any = True
                try:
                    events = decoder.feed(chunk)
                except GatewayError:
                    raise
                except Exception as exc:
                    raise malformed(self._provider.name, exc) from exc
                for ev in events:
                    yield ev
            for ev in decoder.close():
                yield ev
        finally:
            self._resp.close()

    async def aclose(self) -> None:
        # close() (not release()) drops the connection: an unfinished upstream stream must stop now.
        self._resp.close()


class HttpProvider(Provider):
    def __init__(self, cfg: ProviderConfig) -> None:
        self.cfg = cfg
        self.name = cfg.name
        self.codec = get_codec(cfg.protocol)
        self.needs_inline_images = self.codec.needs_inline_images
        self.supports_stop = self.codec.supports_stop
        self._base = cfg.base_url.rstrip("/")
        self._session: aiohttp.ClientSession | None = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            t = self.cfg.timeouts
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0, ttl_dns_cache=300, keepalive_timeout=30),
                timeout=aiohttp.ClientTimeout(total=t.total, sock_connect=t.connect),
                auto_decompress=True,
                skip_auto_headers=("User-Agent",),
            )
        return self._session

    def _headers(self, api_key: str | None, extra: Mapping[str, str]) -> dict[str, str]:
        headers = {"content-type": "application/json", **_FIXED_HEADERS.get(self.cfg.protocol, {})}
        headers.update(self.cfg.headers)
        headers.update(extra)
        if api_key:
            headers.update(_AUTH_STYLE[self.cfg.protocol](api_key))
        return headers

    async def _send(self, req: Request, model: str, api_key: str | None, stream: bool) -> aiohttp.ClientResponse:
        call = self.codec.encode_request(msgspec.structs.replace(req, stream=stream), model)
        url = self._base + call.path
        try:
            async with asyncio.timeout(self.cfg.timeouts.first_byte):
                resp = await self._http().post(url, data=call.body, params=call.query or None,
                                               headers=self._headers(api_key, call.headers))
        except (asyncio.TimeoutError, aiohttp.ClientError, ConnectionError, OSError) as exc:
            raise _transport_error(exc, self.name, "connecting") from exc
        if resp.status >= 400:
            try:
                body = await resp.read()
            except (aiohttp.ClientError, ConnectionError):
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
        except (asyncio.TimeoutError, aiohttp.ClientError, ConnectionError) as exc:
            raise _transport_error(exc, self.name, "reading the response") from exc
        finally:
            resp.release()
        try:
            return self.codec.decode_response(body), resp.status, resp.headers
        except GatewayError:
            raise
        except Exception as exc:  # a codec choking on upstream garbage is the upstream's fault
            raise malformed(self.name, exc) from exc

    async def open(self, req: Request, model: str, api_key: str | None) -> Attempt:
        return HttpAttempt(self, await self._send(req, model, api_key, stream=True))

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()


def malformed(provider: str, exc: Exception) -> GatewayError:
    return GatewayError(ErrorKind.UPSTREAM, f"provider '{provider}' sent a malformed response ({type(exc).__name__})")
