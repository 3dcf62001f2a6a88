"""Typed upstream stream decoding: unknown, malformed and untyped payloads get the answers the dict-walking
decoders gave (skip, defaults, the SSE event name, a StreamError for what is not JSON)."""

from __future__ import annotations

import orjson

from smolgate.canonical import (
    BlockStart,
    BlockStop,
    MessageDelta,
    MessageStart,
    MessageStop,
    StopReason,
    StreamError,
    Text,
    TextDelta,
    Usage,
)
from smolgate.errors import ErrorKind
from smolgate.protocols import anthropic_wire, openai_responses_wire
from smolgate.protocols.anthropic_stream import AnthropicStreamDecoder
from smolgate.protocols.openai_decoders import ResponsesStreamDecoder
from smolgate.protocols.wire import Invalid, Unknown


def _sse(data: object, event: str | None = None) -> bytes:
    head = f"event: {event}\n".encode() if event else b""
    body = data if isinstance(data, bytes) else orjson.dumps(data)
    return head + b"data: " + body + b"\n\n"


def _anthropic(*frames: bytes) -> list[object]:
    d = AnthropicStreamDecoder()
    return [*d.feed(b"".join(frames)), *d.close()]


START = {"type": "message_start", "message": {"id": "msg_1", "model": "claude", "usage": {"input_tokens": 3}}}
STOP = {"type": "message_stop"}


def test_wire_decoder_sorts_payloads() -> None:
    ev = anthropic_wire.EVENTS
    assert isinstance(ev.decode('{"type":"message_stop","extra":{"new":1}}'), anthropic_wire.MessageStop)
    assert ev.decode('{"type":"some_future_event","x":1}') == Unknown(kind="some_future_event")
    assert ev.decode('{"type":"content_block_delta","index":"zero"}') == anthropic_wire.ContentBlockDelta()
    assert ev.decode('{"index":2}', "content_block_stop") == anthropic_wire.ContentBlockStop(index=2)
    assert ev.decode("[1, 2]") == Invalid(json=True) and ev.decode("{nope") == Invalid(json=False)
    rx = openai_responses_wire.EVENTS
    assert rx.decode('{"type":"response.output_text.done","text":"x"}') == Unknown(
        kind="response.output_text.done"
    )
    assert rx.decode('{"type":"error","code":500,"message":"m"}').body.message == "m"  # type: ignore[union-attr]


def test_anthropic_skips_unknown_events_and_blocks_but_closes_the_open_block() -> None:
    evs = _anthropic(
        _sse(START, "message_start"),
        _sse({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        _sse({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "hi"}}),
        _sse({"type": "brand_new_event", "index": 0}),
        _sse(
            {
                "type": "content_block_start",
                "index": 1,
                "content_block": {"type": "server_tool_use", "id": "s"},
            }
        ),
        _sse(
            {
                "type": "content_block_delta",
                "index": 1,
                "delta": {"type": "input_json_delta", "partial_json": "{"},
            }
        ),
        _sse(
            {"type": "content_block_delta", "index": 0, "delta": {"type": "citations_delta", "citation": {}}}
        ),
        _sse({"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 2}}),
        _sse(STOP),
    )
    assert evs == [
        MessageStart(id="msg_1", model="claude", usage=Usage(input_tokens=3)),
        BlockStart(index=0, block=Text(text="")),
        TextDelta(index=0, text="hi"),
        BlockStop(index=0),  # the server tool block closed it, and nothing of the server tool leaked
        MessageDelta(stop_reason=StopReason.END_TURN, usage=Usage(input_tokens=3, output_tokens=2)),
        MessageStop(),
    ]


def test_anthropic_event_without_type_takes_the_sse_event_name() -> None:
    evs = _anthropic(
        _sse({"message": {"id": "msg_2", "model": "m"}}, "message_start"), _sse({}, "message_stop")
    )
    assert evs[0] == MessageStart(id="msg_2", model="m", usage=Usage()) and evs[-1] == MessageStop()


def test_anthropic_malformed_payloads_end_the_stream_clearly() -> None:
    bad_json = _anthropic(_sse(START), _sse(b"{not json"))
    assert bad_json[-1] == StreamError(
        kind=ErrorKind.UPSTREAM, message="upstream sent an invalid stream event"
    )
    not_object = _anthropic(_sse(START), _sse([1, 2]))
    assert not_object[-1] == StreamError(
        kind=ErrorKind.UPSTREAM, message="upstream sent an invalid stream event"
    )
    unreadable_error = _anthropic(_sse(START), _sse({"type": "error", "error": "boom"}))
    assert unreadable_error[-1] == StreamError(kind=ErrorKind.UPSTREAM, message="upstream stream error")
    overloaded = _anthropic(_sse({"type": "error", "error": {"type": "overloaded_error", "message": "busy"}}))
    assert overloaded == [StreamError(kind=ErrorKind.OVERLOADED, message="busy")]


def _responses(*payloads: object) -> list[object]:
    d = ResponsesStreamDecoder()
    return [*d.feed(b"".join(_sse(p) for p in payloads)), *d.close()]


RESP = {"id": "resp_1", "model": "gpt", "created_at": 1700000000}


def test_responses_skips_unknown_events_and_reads_wrongly_shaped_ones_as_bare() -> None:
    delta = {"type": "response.output_text.delta", "item_id": "m", "content_index": 0}
    evs = _responses(
        {"type": "response.created", "response": RESP},
        {**delta, "delta": "hi"},
        {**delta, "delta": 7},  # a delta that is not text: nothing to relay
        {"type": "response.output_text.done", "item_id": "m", "text": "hi"},
        {"type": "response.completed", "response": "not an object"},
    )
    assert evs == [
        MessageStart(id="resp_1", model="gpt", created=1700000000),
        BlockStart(index=0, block=Text(text="")),
        TextDelta(index=0, text="hi"),
        BlockStop(index=0),
        MessageDelta(stop_reason=StopReason.END_TURN, usage=Usage()),
        MessageStop(),
    ]


def test_responses_errors_keep_their_kind_and_message() -> None:
    nested = _responses({"type": "error", "error": {"code": "rate_limit_exceeded", "message": "slow"}})
    assert nested == [StreamError(kind=ErrorKind.RATE_LIMITED, message="slow")]
    flat = _responses({"type": "error", "code": 500, "message": "down"})  # a status as the code
    assert flat == [StreamError(kind=ErrorKind.UPSTREAM, message="down")]
    failed = _responses({"type": "response.failed", "response": {"error": {"code": "server_error"}}})
    assert failed == [StreamError(kind=ErrorKind.UPSTREAM, message="upstream response failed")]
    garbage = _responses({"type": "response.created", "response": RESP}, b"{oops")
    assert garbage[-1] == StreamError(
        kind=ErrorKind.UPSTREAM, message="upstream sent invalid JSON in its stream"
    )
