"""The one guarded fetcher for remote media URLs (SSRF-safe).

Used only when a target needs bytes (an upstream that takes inline data only, or the local engine).
The URL is checked strictly (`check_http_url`), the host resolved and every address judged by
`address_policy` (global unicast only); the connection then goes to a checked address (no second DNS
lookup an attacker could rebind), and each redirect hop is checked the same way. A `MediaBudget` caps what
one client request can make the gateway fetch: how many URLs, and how many bytes all of them together.
"""

from __future__ import annotations

import asyncio
import socket
from urllib.parse import urljoin, urlunsplit

import aiohttp

from . import address_policy
from .errors import invalid
from .protocols.common import check_http_url

MAX_BYTES = 20 * 1024 * 1024  # one URL
TIMEOUT = 15.0
MAX_REDIRECTS = 3
MAX_PARALLEL = 4  # URLs of one request fetched at once
_METADATA_HOSTS = {"metadata.google.internal", "metadata", "instance-data", "metadata.azure.internal"}


class MediaBudget:
    """What one client request may make the gateway fetch (server.max_media_urls / max_media_bytes)."""

    def __init__(self, max_urls: int, max_bytes: int) -> None:
        self.max_urls = max_urls
        self.max_bytes = max_bytes
        self.urls = 0
        self.bytes = 0

    def take_url(self, param: str) -> None:
        self.urls += 1
        if self.urls > self.max_urls:
            raise invalid(
                f"'{param}': a request may have the gateway fetch at most {self.max_urls} media "
                "URLs (server.max_media_urls)",
                param=param,
            )

    def room(self) -> int:
        return max(0, self.max_bytes - self.bytes)

    def take_bytes(self, n: int, param: str) -> None:
        self.bytes += n
        if self.bytes > self.max_bytes:
            raise invalid(
                f"'{param}': the media URLs of one request may fetch at most "
                f"{_mib(self.max_bytes)} together (server.max_media_bytes)",
                param=param,
            )


def _mib(n: int) -> str:
    return f"{n / (1 << 20):g} MiB"


async def _resolve(host: str, port: int, allow_private: bool, param: str) -> str:
    if host.rstrip(".") in _METADATA_HOSTS:
        raise invalid(f"'{param}' points at a cloud metadata host; refused", param=param)
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError, OSError):
        raise invalid(f"'{param}': cannot resolve host '{host}'", param=param) from None
    addrs = [str(info[4][0]) for info in infos if info[0] in (socket.AF_INET, socket.AF_INET6)]
    if not addrs:
        raise invalid(f"'{param}': cannot resolve host '{host}'", param=param)
    if not allow_private and not all(address_policy.allowed(a) for a in addrs):
        raise invalid(
            f"'{param}' resolves to a loopback, private or other non-public address; refused "
            "(server.allow_private_image_urls enables it)",
            param=param,
        )
    return addrs[0]


async def fetch_media(
    url: str,
    *,
    param: str,
    kinds: tuple[str, ...] = ("image/",),
    allow_private: bool = False,
    session: aiohttp.ClientSession | None = None,
    budget: MediaBudget | None = None,
) -> tuple[bytes, str]:
    """Download `url` → (bytes, media type), or raise a 400 naming `param`."""
    if budget is not None:
        budget.take_url(param)
    own = session is None
    session = session or new_session()
    try:
        for _ in range(MAX_REDIRECTS + 1):
            parts, host, port = check_http_url(url, param)
            ip = await _resolve(host, port, allow_private, param)
            netloc = f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"
            direct = urlunsplit((parts.scheme.lower(), netloc, parts.path or "/", parts.query, ""))
            default_port = 443 if parts.scheme.lower() == "https" else 80
            host_header = f"[{host}]" if ":" in host else host
            if port != default_port:
                host_header += f":{port}"
            server_hostname = host if parts.scheme.lower() == "https" else None
            try:
                headers = {"Host": host_header, "Accept-Encoding": "identity"}
                async with session.get(
                    direct, allow_redirects=False, headers=headers, server_hostname=server_hostname
                ) as resp:
                    if resp.status in (301, 302, 303, 307, 308) and "location" in resp.headers:
                        url = urljoin(url, resp.headers["location"])
                        continue
                    return await _accept(resp, param, kinds, budget)
            except (TimeoutError, aiohttp.ClientError, ValueError):
                raise invalid(f"'{param}': could not fetch the URL", param=param) from None
        raise invalid(f"'{param}': too many redirects", param=param)
    finally:
        if own:
            await session.close()


async def _accept(
    resp: aiohttp.ClientResponse, param: str, kinds: tuple[str, ...], budget: MediaBudget | None
) -> tuple[bytes, str]:
    if resp.status != 200:
        raise invalid(f"'{param}': fetching the URL gave HTTP {resp.status}", param=param)
    if resp.headers.get("content-encoding", "identity").strip().lower() != "identity":
        # we asked for identity and never inflate: a compressed body could expand ~1000× past the caps
        raise invalid(f"'{param}': the server sent a compressed body; refused", param=param)
    ctype = resp.headers.get("content-type", "").split(";")[0].strip().lower()
    if not ctype.startswith(kinds):
        raise invalid(f"'{param}': URL content type '{ctype[:100]}' is not {' or '.join(kinds)}", param=param)
    return await _read(resp, param, budget), ctype


async def _read(resp: aiohttp.ClientResponse, param: str, budget: MediaBudget | None) -> bytes:
    cap = MAX_BYTES if budget is None else min(MAX_BYTES, budget.room())
    too_big = invalid(f"'{param}': media larger than {_mib(MAX_BYTES)}", param=param)
    if (resp.content_length or 0) > cap:
        if budget is not None and cap < MAX_BYTES:
            budget.take_bytes(resp.content_length or 0, param)
        raise too_big
    data = bytearray()
    async for chunk in resp.content.iter_chunked(65536):
        data += chunk
        if budget is not None:
            budget.take_bytes(len(chunk), param)
        if len(data) > MAX_BYTES:
            raise too_big
    return bytes(data)


def new_session() -> aiohttp.ClientSession:
    """A session for one request's fetches: no proxy from the environment, no cookies kept between URLs."""
    return aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=TIMEOUT, sock_connect=5.0),
        cookie_jar=aiohttp.DummyCookieJar(),
        trust_env=False,
        auto_decompress=False,
        connector=aiohttp.TCPConnector(limit=MAX_PARALLEL, use_dns_cache=False),
    )
