"""The contract every wire-protocol module implements.

A protocol module is symmetric because the gateway is both a server and a client of every protocol:
the client side turns a client's wire request into a canonical `Request` and canonical results back into
wire bytes; the upstream side does the reverse for calling a provider. Stream codecs are sync
feed/close state machines (no I/O), so they are cheap, testable without an event loop, and emit bytes
as soon as an event arrives.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import ClassVar

from ..canonical import Event, Request, Response
from ..errors import GatewayError


@dataclass(slots=True)
class RequestContext:
    """What a client-side decoder may need beyond the body: path params, query, headers (lower-case)."""

    path_params: Mapping[str, str] = field(default_factory=dict)
    query: Mapping[str, str] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class UpstreamRequest:
    """An HTTP call to a provider, minus auth (the provider adds its own auth header style)."""

    path: str  # appended to the provider's base_url, e.g. "/chat/completions" or "/v1/messages"
    body: bytes
    stream: bool
    headers: dict[str, str] = field(default_factory=dict)
    query: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class ErrorReply:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class ModelInfo:
    id: str
    owned_by: str = "smolgate"
    created: int = 0
    context_length: int | None = None
    supports_images: bool = False


class StreamEncoder(abc.ABC):
    """Canonical events → wire bytes for one client stream."""

    @abc.abstractmethod
    def feed(self, event: Event) -> bytes:
        """Bytes to send now for this event (may be b"")."""

    def close(self) -> bytes:
        """Trailer bytes once the event stream ended (e.g. OpenAI's `data: [DONE]`)."""
        return b""


class StreamDecoder(abc.ABC):
    """Upstream wire bytes → canonical events. Buffers partial lines/frames between feeds.

    Guarantees to its consumer: `MessageStart` first; sequential, non-interleaved block indices; a final
    `MessageDelta` carrying the stop reason and cumulative usage, then `MessageStop`; or a `StreamError`.
    """

    @abc.abstractmethod
    def feed(self, chunk: bytes) -> list[Event]: ...

    @abc.abstractmethod
    def close(self) -> list[Event]:
        """The upstream closed the connection: flush, and report a truncated stream as `StreamError`."""


class Codec(abc.ABC):
    name: ClassVar[str]
    stream_media_type: ClassVar[str] = "text/event-stream"
    # True when an upstream of this protocol cannot take remote image URLs and needs inline bytes.
    needs_inline_images: ClassVar[bool] = False
    # False when an upstream of this protocol cannot take stop sequences; the gateway then cuts itself.
    supports_stop: ClassVar[bool] = True
    # False when an upstream of this protocol cannot be told to make a tool call (forced_tools.py steps in).
    supports_tool_choice: ClassVar[bool] = True

    # ---- client side (serving) ----
    @abc.abstractmethod
    def decode_request(self, body: bytes, ctx: RequestContext) -> Request:
        """Parse and validate; raise `GatewayError(INVALID_REQUEST, param=<field path>)` on bad input."""

    @abc.abstractmethod
    def encode_response(self, resp: Response, req: Request) -> bytes: ...

    @abc.abstractmethod
    def stream_encoder(self, req: Request) -> StreamEncoder: ...

    @abc.abstractmethod
    def encode_error(self, err: GatewayError) -> ErrorReply: ...

    # ---- upstream side (calling a provider) ----
    @abc.abstractmethod
    def encode_request(self, req: Request, upstream_model: str) -> UpstreamRequest: ...

    @abc.abstractmethod
    def decode_response(self, body: bytes) -> Response: ...

    @abc.abstractmethod
    def stream_decoder(self) -> StreamDecoder: ...

    @abc.abstractmethod
    def decode_error(self, status: int, body: bytes, headers: Mapping[str, str]) -> GatewayError: ...
