"""The playground's wire view: the exact bytes of one request, both ways, at both ends (docs/console.md).

A capture exists only for a request that carries `x-smolgate-wire: capture` AND a console session with its
CSRF token (the app checks both), so a client can never make the gateway record other people's traffic, and
requests without it pay one context-variable read in the HTTP transport. The app records the client's request
as received and the bytes it sends back (`wrap`); the transport (providers/http.py) records each upstream request
as sent and tees the upstream's response (`sent` → `UpstreamCall.tee`). Credentials are redacted where they are
recorded: auth headers by name, every configured provider header, `key=` in URLs, and the provider's known
secret values anywhere in a body. Bounded: 1 MiB per part, the 50 newest captures, each kept 10 minutes.
"""

from __future__ import annotations

import base64
import collections
import contextvars
import time
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode

import msgspec

if TYPE_CHECKING:
    from ..providers.base import UpstreamResponse
    from ..providers.http import HttpProvider
    from ..server.asgi import Send

PART_CAP = 1 << 20
MAX_CAPTURES = 50
TTL = 600.0
MAX_UPSTREAM_CALLS = 16  # retries and fallbacks of one request (the retry budget is smaller)
HEADER = "x-smolgate-wire"
MASK = "***"
# header names whose values are credentials, whoever sends them
SECRET_HEADERS = frozenset(
    {"authorization", "x-api-key", "x-goog-api-key", "api-key", "cookie", "set-cookie", "x-smolgate-csrf"}
)
_SECRET_QUERY = frozenset({"key", "api_key", "api-key", "access_token"})

WIRE: contextvars.ContextVar[WireCapture | None] = contextvars.ContextVar("smolgate_wire", default=None)


class _Buffer:
    """Up to PART_CAP bytes of one body, and whether more went by."""

    __slots__ = ("_parts", "size", "truncated")

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self.size = 0
        self.truncated = False

    def add(self, chunk: bytes) -> None:
        room = PART_CAP - self.size
        if room > 0 and chunk:
            self._parts.append(chunk[:room])
            self.size += min(room, len(chunk))
        self.truncated |= len(chunk) > room

    def raw(self) -> bytes:
        return b"".join(self._parts)


class Body(msgspec.Struct, kw_only=True):
    text: str
    base64: bool  # not UTF-8: `text` is the bytes in base64
    truncated: bool  # cut at 1 MiB


def _body(raw: bytes, truncated: bool, redact: Callable[[str], str]) -> Body:
    try:
        return Body(text=redact(raw.decode("utf-8")), base64=False, truncated=truncated)
    except UnicodeDecodeError:
        for cut in (1, 2, 3) if truncated else ():  # the 1 MiB cut may split a character: still text
            try:
                return Body(text=redact(raw[:-cut].decode("utf-8")), base64=False, truncated=True)
            except UnicodeDecodeError:
                continue
        return Body(text=base64.b64encode(raw).decode(), base64=True, truncated=truncated)


def redact_headers(headers: Iterable[tuple[str, str]], also: frozenset[str] = frozenset()) -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in headers:
        name = k.lower()
        out[name] = MASK if name in SECRET_HEADERS or name in also else v
    return out


def redact_query(query: str) -> str:
    if not query:
        return ""
    pairs = parse_qsl(query, keep_blank_values=True)
    return urlencode([(k, MASK if k.lower() in _SECRET_QUERY else v) for k, v in pairs])


class ClientRequest(msgspec.Struct, kw_only=True):
    method: str
    path: str
    headers: dict[str, str]
    body: Body


class UpstreamExchange(msgspec.Struct, kw_only=True):
    url: str
    method: str
    headers: dict[str, str]
    body: Body
    status: int | None  # None: no answer (connection refused, timed out before the headers)
    response_headers: dict[str, str]
    response_body: Body


class ClientResponse(msgspec.Struct, kw_only=True):
    status: int
    headers: dict[str, str]
    body: Body


class Wire(msgspec.Struct, kw_only=True):
    request_id: str
    ts: float
    client_request: ClientRequest
    upstream: list[UpstreamExchange]
    client_response: ClientResponse


class UpstreamCall:
    """One upstream request as sent, and what came back (filled as the transport reads it)."""

    def __init__(self, url: str, headers: dict[str, str], body: bytes, redact: Callable[[str], str]) -> None:
        self.url, self.headers, self.redact = url, headers, redact
        self.request = _Buffer()
        self.request.add(body)
        self.status: int | None = None
        self.response_headers: dict[str, str] = {}
        self.response = _Buffer()

    def tee(self, resp: UpstreamResponse) -> UpstreamResponse:
        self.status = resp.status
        self.response_headers = redact_headers(resp.headers.items())
        return _Tee(resp, self.response)

    def exchange(self) -> UpstreamExchange:
        return UpstreamExchange(
            url=self.url,
            method="POST",
            headers=self.headers,
            body=_body(self.request.raw(), self.request.truncated, self.redact),
            status=self.status,
            response_headers=self.response_headers,
            response_body=_body(self.response.raw(), self.response.truncated, self.redact),
        )


class _Tee:
    """The transport's response, with every byte read also copied into the capture."""

    def __init__(self, resp: UpstreamResponse, buf: _Buffer) -> None:
        self._r, self._buf = resp, buf
        self.status = resp.status

    @property
    def headers(self) -> Mapping[str, str]:
        return self._r.headers

    async def read_chunk(self) -> bytes:
        chunk = await self._r.read_chunk()
        self._buf.add(chunk)
        return chunk

    def take_complete(self) -> bytes | None:
        take: Callable[[], bytes | None] | None = getattr(self._r, "take_complete", None)
        body = take() if take is not None else None
        if body is not None:
            self._buf.add(body)
        return body

    def release(self) -> None:
        self._r.release()

    def close(self) -> None:
        self._r.close()


def _same(text: str) -> str:
    return text


class WireCapture:
    """One request's capture, while it runs."""

    def __init__(
        self,
        request_id: str,
        method: str,
        path: str,
        query: Mapping[str, str],
        headers: Mapping[str, str],
        body: bytes,
    ) -> None:
        self.request_id, self.ts, self.method = request_id, time.time(), method
        q = redact_query(urlencode(list(query.items()))) if query else ""
        self.path = path + ("?" + q if q else "")
        self.headers = redact_headers(headers.items())
        self.body = body
        self.calls: list[UpstreamCall] = []
        self.status = 0
        self.response_headers: dict[str, str] = {}
        self.response = _Buffer()

    def sent(
        self, provider: HttpProvider, path: str, query: str, headers: Mapping[str, str], body: bytes
    ) -> UpstreamCall | None:
        """Record an upstream request `provider` is sending (None past the bound of calls). Its configured
        headers are credentials as far as we know (they are Secrets in the config)."""
        if len(self.calls) >= MAX_UPSTREAM_CALLS:
            return None
        q, redact = redact_query(query), provider.scrub.redact
        url = redact(provider.cfg.base_url.rstrip("/") + path + ("?" + q if q else ""))
        hidden = frozenset(h.lower() for h in provider.cfg.headers)
        call = UpstreamCall(url, redact_headers(headers.items(), hidden), body, redact)
        self.calls.append(call)
        return call

    def wrap(self, send: Send) -> Send:
        """`send` that also records the client's response (status, headers, body bytes)."""

        async def recording(msg: dict[str, Any]) -> None:
            if msg["type"] == "http.response.start":
                self.status = msg["status"]
                raw = msg.get("headers", ())
                self.response_headers = redact_headers(
                    (k.decode("latin-1"), v.decode("latin-1")) for k, v in raw
                )
            elif msg["type"] == "http.response.body":
                self.response.add(msg.get("body", b""))
            await send(msg)

        return recording

    def result(self) -> Wire:
        cut = len(self.body) > PART_CAP
        return Wire(
            request_id=self.request_id,
            ts=self.ts,
            client_request=ClientRequest(
                method=self.method,
                path=self.path,
                headers=self.headers,
                body=_body(self.body[:PART_CAP], cut, _same),
            ),
            upstream=[c.exchange() for c in self.calls],
            client_response=ClientResponse(
                status=self.status,
                headers=self.response_headers,
                body=_body(self.response.raw(), self.response.truncated, _same),
            ),
        )


class WireStore:
    """The newest captures (at most MAX_CAPTURES, each for TTL seconds), by request id."""

    def __init__(self) -> None:
        self._items: collections.OrderedDict[str, Wire] = collections.OrderedDict()

    def put(self, wire: Wire) -> None:
        self._items.pop(wire.request_id, None)
        self._items[wire.request_id] = wire
        while len(self._items) > MAX_CAPTURES:
            self._items.popitem(last=False)

    def get(self, request_id: str) -> Wire | None:
        cutoff = time.time() - TTL
        while self._items and next(iter(self._items.values())).ts < cutoff:
            self._items.popitem(last=False)
        return self._items.get(request_id)
