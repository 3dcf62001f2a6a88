"""A client stream's body: canonical events through a protocol's stream encoder, failures as in-stream errors."""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, AsyncIterator

from ..canonical import Event, StreamError
from ..errors import ErrorKind, GatewayError
from ..protocols.base import StreamEncoder

log = logging.getLogger("smolgate.server")


async def encode_events(
    enc: StreamEncoder, first: Event, events: AsyncIterator[Event]
) -> AsyncIterator[bytes]:
    """A client stream's bytes: each event through the encoder; a failure becomes the protocol's in-stream
    error; the upstream stream is closed however it ends (the encoder's trailer is the caller's)."""
    try:
        yield enc.feed(first)
        async for ev in events:
            yield enc.feed(ev)
    except GatewayError as exc:
        yield enc.feed(StreamError(kind=exc.kind, message=exc.message))
    except Exception:
        log.exception("internal error while streaming")
        yield enc.feed(StreamError(kind=ErrorKind.INTERNAL, message="internal error while streaming"))
    finally:
        if isinstance(events, AsyncGenerator):  # the dispatcher's stream: closing it closes the upstream
            await events.aclose()
