"""The one guarded fetcher for remote media URLs (SSRF-safe).

Used only when a target needs bytes (an upstream that takes inline data only, or the local engine).
The host is resolved first and every address checked; the connection then goes to the checked address
(no second DNS lookup an attacker could rebind), and each redirect hop is checked again. Loopback,
private, link-local, multicast, reserved and cloud-metadata addresses are refused unless allowed.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from urllib.parse import urljoin, urlsplit, urlunsplit

import aiohttp

from .errors import invalid

MAX_BYTES = 20 * 1024 * 1024
TIMEOUT = 15.0
MAX_REDIRECTS = 3
_METADATA_HOSTS = {"metadata.google.internal", "metadata", "instance-data"}


def _refused(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return (ip.is_loopback or ip.is_private or ip.is_link_local or ip.is_multicast or ip.is_reserved
            or ip.is_unspecified or str(ip) in ("169.254.169.254", "100.100.100.200", "fd00:ec2::254"))


async def _resolve(host: str, port: int, allow_private: bool, param: str) -> str:
    if host.lower() in _METADATA_HOSTS:
        raise invalid(f"'{param}' points at a cloud metadata host; refused", param=param)
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror:
        raise invalid(f"'{param}': cannot resolve host '{host}'", param=param) from None
    addrs = [info[4][0] for info in infos]
    if not allow_private:
        for a in addrs:
            if _refused(ipaddress.ip_address(a.split("%")[0])):
                raise invalid(f"'{param}' resolves to a private or loopback address; refused "
                              "(server.allow_private_image_urls enables it)", param=param)
    return addrs[0]


async def fetch_media(url: str, *, param: str, kinds: tuple[str, ...] = ("image/",),
                      allow_private: bool = False, session: aiohttp.ClientSession | None = None) -> tuple[bytes, str]:
    """Download `url` → (bytes, media type), or raise a 400 naming `param`."""
    own = session is None
    session = session or aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=TIMEOUT))
    try:
        for _ in range(MAX_REDIRECTS + 1):
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise invalid(f"'{param}' must be an http(s) URL", param=param)
            port = parts.port or (443 if parts.scheme == "https" else 80)
            ip = await _resolve(parts.hostname, port, allow_private, param)
            netloc = f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"
            direct = urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, ""))
            kwargs = {"server_hostname": parts.hostname} if parts.scheme == "https" else {}
            try:
                async with session.get(direct, allow_redirects=False, headers={"Host": parts.netloc},
                                       **kwargs) as resp:
                    if resp.status in (301, 302, 303, 307, 308) and "location" in resp.headers:
                        url = urljoin(url, resp.headers["location"])
                        continue
                    if resp.status != 200:
                        raise invalid(f"'{param}': fetching the URL gave HTTP {resp.status}", param=param)
                    ctype = resp.headers.get("content-type", "").split(";")[0].strip().lower()
                    if not ctype.startswith(kinds):
                        raise invalid(f"'{param}': URL content type '{ctype}' is not {' or '.join(kinds)}", param=param)
                    if int(resp.headers.get("content-length") or 0) > MAX_BYTES:
                        raise invalid(f"'{param}': media larger than {MAX_BYTES >> 20} MiB", param=param)
                    data = bytearray()
                    async for chunk in resp.content.iter_chunked(65536):
                        data += chunk
                        if len(data) > MAX_BYTES:
                            raise invalid(f"'{param}': media larger than {MAX_BYTES >> 20} MiB", param=param)
                    return bytes(data), ctype
            except (aiohttp.ClientError, asyncio.TimeoutError):
                raise invalid(f"'{param}': could not fetch the URL", param=param) from None
        raise invalid(f"'{param}': too many redirects", param=param)
    finally:
        if own:
            await session.close()
