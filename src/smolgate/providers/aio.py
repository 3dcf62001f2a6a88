"""The aiohttp backend (`transport: aiohttp`, e.g. to honour HTTP(S)_PROXY) behind h1's small interface.

Held to the same rules as h1: the target and headers pass the same `urls` gate, redirects are never followed
(an upstream's 3xx must not carry our key to another origin), no compressed bodies are asked for or inflated
(a small gzip bomb cannot become a large body), and the response's header lines are capped.
"""

from __future__ import annotations

from collections.abc import Awaitable, Mapping

import aiohttp
from yarl import URL

from ..config import ProviderConfig
from .h1 import _MAX_HEADERS
from .urls import check_headers, check_target


class AiohttpResponse:
    """aiohttp's response behind the same small interface as `h1.H1Response`."""

    def __init__(self, resp: aiohttp.ClientResponse) -> None:
        self._resp, self.status, self.headers = resp, resp.status, resp.headers

    async def read_chunk(self) -> bytes:
        chunk = await self._resp.content.readany()
        if not chunk:
            self._resp.release()  # read to the end: aiohttp may keep the connection
        return chunk

    def release(self) -> None:
        self._resp.release()

    def close(self) -> None:
        self._resp.close()


class AiohttpTransport:
    def __init__(self, cfg: ProviderConfig) -> None:
        self._cfg = cfg
        self._base = cfg.base_url.rstrip("/")
        self._prefix = URL(self._base).raw_path.rstrip("/")
        self._session: aiohttp.ClientSession | None = None

    def _open(self) -> aiohttp.ClientSession:
        t, lim = self._cfg.timeouts, self._cfg.limits
        return aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, ttl_dns_cache=300, keepalive_timeout=30),
            # the provider applies first-byte / idle / total deadlines itself (http.py)
            timeout=aiohttp.ClientTimeout(total=None, connect=t.connect, sock_connect=t.connect),
            skip_auto_headers=("User-Agent",),
            trust_env=True,
            auto_decompress=False,
            max_line_size=lim.max_header_bytes,
            max_field_size=lim.max_header_bytes,
            max_headers=_MAX_HEADERS,
        )

    async def post(self, path: str, body: bytes, headers: Mapping[str, str], query: str) -> AiohttpResponse:
        tail = path + (("?" + query) if query else "")
        check_target(self._prefix + tail)
        check_headers(headers)
        if self._session is None or self._session.closed:
            self._session = self._open()
        url = URL(self._base + tail, encoded=True)  # already percent-encoded: sent as it is
        resp = await self._session.post(
            url, data=body, headers={**headers, "accept-encoding": "identity"}, allow_redirects=False
        )
        return AiohttpResponse(resp)

    def close(self) -> Awaitable[None] | None:
        return self._session.close() if self._session is not None else None
