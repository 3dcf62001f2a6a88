"""Anthropic Messages codec under fuzzing: whatever the bytes, a clean result or a GatewayError."""

from __future__ import annotations

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from smolgate.canonical import (
    BlockStart,
    BlockStop,
    MessageDelta,
    MessageStart,
    MessageStop,
    ReasoningDelta,
    Request,
    SignatureDelta,
    StreamError,
    TextDelta,
    ToolArgsDelta,
)
from smolgate.errors import ErrorKind, GatewayError
from smolgate.protocols.anthropic import (
    decode_count_tokens_request,
)
from tests.protocols.anthropic_helpers import (
    CTX_NEW,
    CTX_OLD,
    PNG_B64,
    base,
    codec,
    dec,
    decode_stream,
    encode_stream,
)

# ======================================================== fuzz

JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=8),
    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8), c, max_size=4),
    max_leaves=20,
)
KEYS = [
    "model",
    "max_tokens",
    "messages",
    "system",
    "tools",
    "tool_choice",
    "thinking",
    "output_config",
    "stop_sequences",
    "temperature",
    "top_k",
    "metadata",
    "content",
    "role",
    "type",
    "text",
    "source",
    "data",
    "url",
    "media_type",
    "tool_use_id",
    "input",
    "id",
    "name",
    "input_schema",
    "budget_tokens",
    "format",
    "schema",
    "signature",
    "thinking",
    "is_error",
    "stream",
    "output_format",
]
VALID = {
    "model": "m",
    "max_tokens": 10,
    "system": [{"type": "text", "text": "s"}],
    "messages": [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "hi"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG_B64}},
            ],
        },
        {
            "role": "assistant",
            "content": [
                {"type": "tool_use", "id": "t", "name": "f", "input": {}},
                {"type": "thinking", "thinking": "x", "signature": "s"},
            ],
        },
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": "r"}]},
    ],
    "tools": [{"name": "f", "input_schema": {"type": "object"}}],
    "tool_choice": {"type": "auto"},
    "thinking": {"type": "enabled", "budget_tokens": 1024},
    "output_config": {"format": {"type": "json_schema", "schema": {}}},
}


def _mutate(obj, path, value):
    if not path:
        return value
    key, rest = path[0], path[1:]
    if isinstance(obj, dict):
        k = key if isinstance(key, str) else (list(obj)[key % len(obj)] if obj else "x")
        new = dict(obj)
        new[k] = _mutate(obj.get(k), rest, value)
        return new
    if isinstance(obj, list) and obj:
        i = key % len(obj) if isinstance(key, int) else 0
        new = list(obj)
        new[i] = _mutate(obj[i], rest, value)
        return new
    return value


def _check_decode(body: bytes) -> None:
    for fn in (lambda b: codec.decode_request(b, CTX_NEW), lambda b: decode_count_tokens_request(b, CTX_OLD)):
        try:
            r = fn(body)
        except GatewayError as e:
            assert 400 <= e.status < 500
        else:
            assert isinstance(r, Request)
            codec.encode_request(r, "m")  # whatever decodes must also encode upstream


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(JSON, st.dictionaries(st.sampled_from(KEYS), JSON, max_size=6)))
def test_fuzz_random_json(value):
    _check_decode(orjson.dumps(value))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(st.sampled_from(KEYS), st.integers(0, 5)), min_size=1, max_size=5), JSON)
def test_fuzz_mutated_valid_request(path, value):
    _check_decode(orjson.dumps(_mutate(VALID, path, value)))


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=64))
def test_fuzz_raw_bytes(body):
    _check_decode(body)


def test_fuzz_seed_is_valid():
    r = dec(VALID)
    assert r.messages[2].content[0].name == "f"


_FRAME_TYPES = [
    "message_start",
    "content_block_start",
    "content_block_delta",
    "content_block_stop",
    "message_delta",
    "message_stop",
    "ping",
    "error",
    "bogus",
]
_SMALL = (
    st.none()
    | st.integers(-2, 5)
    | st.text(max_size=3)
    | st.dictionaries(
        st.sampled_from(["type", "input_tokens", "output_tokens", "message", "id", "model"]),
        st.integers(0, 5) | st.text(max_size=3),
        max_size=3,
    )
)
_FRAME = st.fixed_dictionaries(
    {"type": st.sampled_from(_FRAME_TYPES)},
    optional={
        "index": st.integers(-1, 3) | _SMALL | st.lists(st.integers(0, 3), max_size=1),
        "message": _SMALL | st.just({"usage": {}}),
        "content_block": st.sampled_from(
            [
                {"type": "text", "text": "a"},
                {"type": "tool_use", "id": "t", "name": "f", "input": {"a": 1}},
                {"type": "thinking"},
                {"type": "redacted_thinking", "data": "d"},
                {"type": "x"},
            ]
        )
        | _SMALL,
        "delta": st.sampled_from(
            [
                {"type": "text_delta", "text": "t"},
                {"type": "thinking_delta", "thinking": "h"},
                {"type": "signature_delta", "signature": "s"},
                {"type": "input_json_delta", "partial_json": "{"},
                {"stop_reason": "tool_use"},
            ]
        )
        | _SMALL,
        "usage": _SMALL,
        "error": _SMALL | st.fixed_dictionaries({"type": _SMALL | st.just([1])}),
    },
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_FRAME, max_size=10), st.integers(1, 50), st.booleans())
def test_fuzz_stream_decoder_keeps_its_guarantees(frames_, step, with_event_line):
    data = b"".join(
        (b"event: " + f["type"].encode() + b"\n" if with_event_line else b"")
        + b"data: "
        + orjson.dumps(f)
        + b"\n\n"
        for f in frames_
    )
    evs = decode_stream(data, step)
    assert evs, "close() must always report something"
    assert isinstance(evs[-1], (MessageStop, StreamError))
    if not isinstance(evs[0], StreamError):
        assert isinstance(evs[0], MessageStart)
    opened: list[int] = []
    for e in evs:
        if isinstance(e, BlockStart):
            assert e.index == len(opened) and (not opened or opened[-1] is None)
            opened.append(e.index)
        elif isinstance(e, BlockStop):
            assert opened and opened[-1] == e.index
            opened[-1] = None  # type: ignore[call-overload]
        elif isinstance(e, (TextDelta, ToolArgsDelta, ReasoningDelta, SignatureDelta)):
            assert opened and opened[-1] == e.index
        elif isinstance(e, MessageDelta):
            assert not opened or opened[-1] is None
    # and the client encoder accepts whatever the decoder produced
    encode_stream(evs)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.one_of(
            st.sampled_from(
                [
                    "content",
                    "usage",
                    "stop_reason",
                    "stop_sequence",
                    "type",
                    "id",
                    "input",
                    "signature",
                    "thinking",
                    "data",
                    "text",
                ]
            ),
            st.integers(0, 5),
        ),
        min_size=1,
        max_size=4,
    ),
    JSON,
)
def test_fuzz_decode_response_only_raises_gateway_errors(path, value):
    wire = {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "c",
        "stop_reason": "end_turn",
        "content": [
            {"type": "text", "text": "hi"},
            {"type": "thinking", "thinking": "t", "signature": "s"},
            {"type": "tool_use", "id": "t", "name": "f", "input": {}},
        ],
        "usage": {"input_tokens": 1, "output_tokens": 1},
    }
    try:
        r = codec.decode_response(orjson.dumps(_mutate(wire, path, value)))
    except GatewayError as e:
        assert e.kind is ErrorKind.UPSTREAM
    else:
        codec.encode_response(r, dec(base()))
