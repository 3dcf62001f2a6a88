"""A client stream's body: canonical events through a protocol's stream encoder, failures as in-stream errors."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, AsyncIterator

from ..canonical import Event, StreamError
from ..errors import ErrorKind, GatewayError
from ..protocols.base import StreamEncoder
from ..telemetry import RequestRecord
from .drain import Drain

log = logging.getLogger("smolgate.server")

SHUTDOWN_MESSAGE = "the server is shutting down; the stream was ended before its answer was complete"


async def encode_events(
    enc: StreamEncoder,
    first: Event,
    events: AsyncIterator[Event],
    drain: Drain | None = None,
    rec: RequestRecord | None = None,
) -> AsyncIterator[bytes]:
    """A client stream's bytes: each event through the encoder; a failure becomes the protocol's in-stream
    error, and so does a shutdown whose grace period ran out (`drain`); the upstream stream is closed however
    it ends (the encoder's trailer is the caller's)."""
    try:
        yield enc.feed(first)
        async for ev in events:
            yield enc.feed(ev)
    except GatewayError as exc:
        yield enc.feed(StreamError(kind=exc.kind, message=exc.message))
    except asyncio.CancelledError:
        if drain is None or not drain.claims(asyncio.current_task()):
            raise
        if rec is not None:
            rec.error_kind = ErrorKind.OVERLOADED.value
        yield enc.feed(StreamError(kind=ErrorKind.OVERLOADED, message=SHUTDOWN_MESSAGE))
    except Exception:
        log.exception("internal error while streaming")
        yield enc.feed(StreamError(kind=ErrorKind.INTERNAL, message="internal error while streaming"))
    finally:
        if isinstance(events, AsyncGenerator):  # the dispatcher's stream: closing it closes the upstream
            await events.aclose()
