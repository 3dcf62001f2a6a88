"""What the dispatcher needs from a provider, remote or local.

An attempt is opened first (`open`): for a remote provider that means the upstream answered with
headers, so the pool can read status and rate-limit headers before anything reaches the client. The
attempt then yields canonical events; closing it (`aclose`) closes the upstream request too.
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator, Mapping
from typing import Protocol

from ..canonical import Event, Request, Response


class Attempt(abc.ABC):
    status: int = 200
    headers: Mapping[str, str] = {}

    @abc.abstractmethod
    def events(self) -> AsyncIterator[Event]: ...

    @abc.abstractmethod
    async def aclose(self) -> None: ...


class Provider(abc.ABC):
    name: str
    protocol: str = "local"  # the upstream protocol spoken (ledger, metrics, traces)
    needs_inline_images: bool = False
    supports_stop: bool = True  # False → the dispatcher enforces stop sequences itself

    @property
    def supports_tool_choice(self) -> bool:
        """False → the dispatcher turns a forced tool call into a constrained answer (forced_tools.py)."""
        codec = getattr(self, "codec", None)
        return getattr(codec, "supports_tool_choice", True)

    @abc.abstractmethod
    async def complete(
        self, req: Request, model: str, api_key: str | None
    ) -> tuple[Response, int, Mapping[str, str]]:
        """A non-streaming call: the response plus upstream status and headers (for the pool)."""

    @abc.abstractmethod
    async def open(self, req: Request, model: str, api_key: str | None) -> Attempt:
        """Start a streaming call; returns once the upstream accepted it (2xx headers received)."""

    async def count_tokens(self, req: Request, model: str, api_key: str | None) -> int | None:
        """Exact prompt token count when the provider can tell; None → the gateway estimates."""
        return None

    async def aclose(self) -> None:
        return None


class UpstreamResponse(Protocol):
    """What both transports answer with (h1.H1Response, aio.AiohttpResponse)."""

    status: int

    @property
    def headers(self) -> Mapping[str, str]: ...

    async def read_chunk(self) -> bytes: ...

    def release(self) -> None: ...

    def close(self) -> None: ...
