"""Who may talk to the gateway from a browser: the Host allow-list and the Origin / CORS rules.

A web page the user visits can send requests to a gateway on localhost: directly (cross-origin; CSRF) or by
DNS rebinding (its own name resolved to 127.0.0.1, so the browser thinks it is same-origin). The Host
allow-list stops rebinding: keyless (loopback) mode answers only the loopback names unless `allowed_hosts`
says otherwise. A cross-origin browser request (an `Origin` that is not the gateway's own, or
`Sec-Fetch-Site: cross-site`) is refused unless its origin is listed in `cors_origins`; listed origins get
CORS headers and preflight answers. SDKs and curl send neither header and are unaffected.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping

from ..config import Config
from ..errors import ErrorKind, GatewayError

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "[::1]")
_EXPOSE = "retry-after, x-request-id, request-id, x-should-retry, x-smolgate-vision-bridge"


def _norm_host(entry: str) -> str:
    h = entry.strip().lower().rstrip(".")
    try:
        return f"[{ipaddress.IPv6Address(h.strip('[]')).compressed}]"
    except ValueError:
        return h


def host_name(host: str) -> str:
    """The name part of a Host header value, lower-case: `[::1]:8000` → `[::1]`, `Example.com:80` → `example.com`."""
    h = host.strip().lower()
    if h.startswith("["):
        end = h.find("]")
        return _norm_host(h[: end + 1]) if end > 0 else h
    name, sep, port = h.rpartition(":")
    return (name if sep and port.isdigit() else h).rstrip(".")


def _forbidden(message: str) -> GatewayError:
    return GatewayError(ErrorKind.PERMISSION, message)


class Access:
    def __init__(self, cfg: Config) -> None:
        s = cfg.server
        hosts = s.allowed_hosts
        if hosts is None and not cfg.keys:
            hosts = list(LOOPBACK_NAMES)
        self._any_host = hosts is None or "*" in hosts
        entries = [_norm_host(h) for h in hosts or ()]
        self._hosts = frozenset(h for h in entries if not h.startswith("*."))
        self._suffixes = tuple(
            h[1:] for h in entries if h.startswith("*.")
        )  # "*.example.com" → ".example.com"
        self._any_origin = "*" in s.cors_origins
        self._origins = frozenset(o.strip().rstrip("/").lower() for o in s.cors_origins if o != "*")

    def check_host(self, headers: Mapping[str, str]) -> None:
        """403 unless the Host header names this gateway (no Host: an HTTP/1.0 tool, never a browser)."""
        if self._any_host:
            return
        host = headers.get("host")
        if host is None:
            return
        name = host_name(host)
        if (
            name in self._hosts
            or host.strip().lower() in self._hosts
            or (self._suffixes and name.endswith(self._suffixes))
        ):
            return
        raise _forbidden("this Host is not served here; add it to server.allowed_hosts")

    def cors(self, headers: Mapping[str, str]) -> dict[str, str] | None:
        """CORS headers for an allowed cross-origin browser request; None when there is no cross-origin
        request; a 403 for one from an origin that is not allowed."""
        origin = headers.get("origin")
        if origin is None:
            if headers.get("sec-fetch-site") == "cross-site":
                raise _forbidden("cross-site browser requests are not allowed")
            return None
        o = origin.strip().rstrip("/").lower()
        host = headers.get("host")
        if (
            host is not None
            and o.partition("://")[2] == host.strip().lower()
            and o.partition("://")[0] in ("http", "https")
            and headers.get("sec-fetch-site") in (None, "same-origin")
        ):
            return None  # the gateway's own origin (the Host check already vouched for the name)
        if self._any_origin or o in self._origins:
            return {
                "access-control-allow-origin": origin.strip(),
                "vary": "origin",
                "access-control-expose-headers": _EXPOSE,
            }
        raise _forbidden(
            "cross-origin browser requests from this origin are not allowed; list it in server.cors_origins"
        )

    @staticmethod
    def preflight(headers: Mapping[str, str], cors: dict[str, str]) -> dict[str, str]:
        """Headers of the answer to an allowed `OPTIONS` preflight."""
        asked = headers.get("access-control-request-headers", "")
        allow = asked if len(asked) <= 1024 and asked.isprintable() else "authorization, content-type"
        return {
            **cors,
            "access-control-allow-methods": "GET, POST, HEAD, OPTIONS",
            "access-control-allow-headers": allow or "authorization, content-type",
            "access-control-max-age": "600",
        }
