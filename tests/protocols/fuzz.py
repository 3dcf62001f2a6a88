"""Shared pieces of the request-decoder fuzz tests: JSON values, mutations of a valid request, the check."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from smolgate.canonical import (
    BlockStart,
    BlockStop,
    Event,
    MessageDelta,
    MessageStart,
    MessageStop,
    ReasoningDelta,
    Request,
    StreamError,
    TextDelta,
    ToolArgsDelta,
)
from smolgate.errors import GatewayError
from smolgate.protocols.base import Codec, RequestContext, StreamDecoder


def json_values() -> st.SearchStrategy[Any]:
    return st.recursive(
        st.none() | st.booleans() | st.integers(-3, 3) | st.floats(allow_nan=False) | st.text(max_size=5),
        lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=5), kids, max_size=3),
        max_leaves=8,
    )


def mutate(obj: Any, path: list[int], value: Any) -> Any:
    """Replace the node at `path` (list of keys/indices, possibly stopping early) by `value`."""
    if not path or not isinstance(obj, (dict, list)) or not obj:
        return value
    key = path[0] % len(obj) if isinstance(obj, list) else sorted(obj)[path[0] % len(obj)]
    copy = list(obj) if isinstance(obj, list) else dict(obj)
    copy[key] = mutate(copy[key], path[1:], value)
    return copy


def assert_request_or_4xx(codec: Codec, body: bytes, ctx: RequestContext) -> None:
    """What a decoder may do with any input: return a Request, or raise a client error — nothing else."""
    try:
        assert isinstance(codec.decode_request(body, ctx), Request)
    except GatewayError as e:
        assert 400 <= e.status < 500


def decode_in_steps(decoder: StreamDecoder, wire: bytes, step: int) -> list[Event]:
    """Feed `wire` in `step`-byte pieces, then close: what a decoder yields for a stream split anywhere."""
    events: list[Event] = []
    for k in range(0, len(wire), step):
        events += decoder.feed(wire[k : k + step])
    return events + decoder.close()


def assert_stream_guarantees(events: list[Event]) -> None:
    """StreamDecoder contract: MessageStart first, sequential non-interleaved blocks, then delta+stop or error."""
    assert events, "close() must always end the stream with something"
    if isinstance(events[0], StreamError):
        return
    assert isinstance(events[0], MessageStart)
    open_idx, next_idx = None, 0
    for e in events[1:-2]:
        if isinstance(e, BlockStart):
            assert open_idx is None and e.index == next_idx
            open_idx, next_idx = e.index, next_idx + 1
        elif isinstance(e, BlockStop):
            assert e.index == open_idx
            open_idx = None
        elif isinstance(e, (TextDelta, ReasoningDelta, ToolArgsDelta)):
            assert e.index == open_idx
    tail = events[-2:]
    assert isinstance(events[-1], StreamError) or (
        isinstance(tail[0], MessageDelta) and tail[1] == MessageStop()
    )
