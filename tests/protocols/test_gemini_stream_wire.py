"""Typed Gemini stream decoding: camelCase and snake_case (or both) spellings, unknown fields, wrongly shaped
fields and malformed payloads get the answers the dict-walking decoder gave."""

from __future__ import annotations

import orjson

from smolgate.canonical import (
    BlockStart,
    BlockStop,
    Event,
    MessageDelta,
    MessageStart,
    MessageStop,
    ReasoningDelta,
    SignatureDelta,
    StopReason,
    StreamError,
    Text,
    TextDelta,
    ToolArgsDelta,
    ToolCall,
    Usage,
)
from smolgate.canonical import Reasoning as ReasoningBlock
from smolgate.errors import ErrorKind
from smolgate.protocols import gemini_wire
from smolgate.protocols.gemini_parts import snake
from smolgate.protocols.gemini_stream import GeminiStreamDecoder
from smolgate.protocols.wire import Invalid


def _sse(data: object) -> bytes:
    return b"data: " + (data if isinstance(data, bytes) else orjson.dumps(data)) + b"\n\n"


def _run(*payloads: object) -> list[Event]:
    d = GeminiStreamDecoder()
    out = d.feed(b"".join(_sse(p) for p in payloads)) + d.close()
    for e in out:  # generated ids differ per run
        if isinstance(e, MessageStart):
            e.created = 0
    return out


def _snake_keys(obj: object) -> object:
    """Every structural key snake_case (function args are user data and keep their keys)."""
    if isinstance(obj, list):
        return [_snake_keys(v) for v in obj]
    if not isinstance(obj, dict):
        return obj
    return {snake(k): v if k == "args" else _snake_keys(v) for k, v in obj.items()}


STREAM: list[dict[str, object]] = [
    {
        "candidates": [
            {"content": {"role": "model", "parts": [{"text": "plan", "thought": True}]}, "index": 0}
        ],
        "usageMetadata": {"promptTokenCount": 9, "toolUsePromptTokenCount": 1},
        "modelVersion": "gemini-2.5",
        "responseId": "rid",
    },
    {"candidates": [{"content": {"parts": [{"text": "", "thought": True, "thoughtSignature": "U0lH"}]}}]},
    {"candidates": [{"content": {"parts": [{"text": "Hél"}, {"text": "lo", "thoughtSignature": "VFhU"}]}}]},
    {
        "candidates": [
            {
                "content": {
                    "parts": [
                        {"functionCall": {"id": "c1", "name": "f", "args": {"city_name": "Paris", "n": 1}}}
                    ]
                },
                "finishReason": "STOP",
            }
        ],
        "usageMetadata": {
            "promptTokenCount": 9,
            "candidatesTokenCount": 4,
            "thoughtsTokenCount": 2,
            "totalTokenCount": 15,
        },
    },
]

EVENTS: list[Event] = [
    MessageStart(id="rid", model="gemini-2.5", created=0),
    BlockStart(index=0, block=ReasoningBlock()),
    ReasoningDelta(index=0, text="plan"),
    SignatureDelta(index=0, signature="gemini:U0lH"),
    BlockStop(index=0),
    BlockStart(index=1, block=Text(text="")),
    TextDelta(index=1, text="Hél"),
    TextDelta(index=1, text="lo"),
    BlockStop(index=1),
    BlockStart(index=2, block=ReasoningBlock()),
    SignatureDelta(index=2, signature="gemini:VFhU"),
    BlockStop(index=2),
    BlockStart(index=3, block=ToolCall(id="c1", name="f", arguments="")),
    ToolArgsDelta(index=3, json='{"city_name":"Paris","n":1}'),
    BlockStop(index=3),
    MessageDelta(
        stop_reason=StopReason.TOOL_USE,
        usage=Usage(input_tokens=9, output_tokens=6, reasoning_tokens=2),
    ),
    MessageStop(),
]


def test_camel_case_stream() -> None:
    assert _run(*STREAM) == EVENTS


def test_snake_case_stream_reads_the_same_and_keeps_argument_keys() -> None:
    snaked = [_snake_keys(p) for p in STREAM]
    assert "usage_metadata" in snaked[0] and "function_call" in orjson.dumps(snaked[3]).decode()  # type: ignore[operator]
    assert _run(*snaked) == EVENTS


def test_both_spellings_camel_case_wins_unless_null() -> None:
    dec = gemini_wire.decode
    both = dec(
        '{"finish_reason":"MAX_TOKENS","candidates":[{"finishReason":"STOP","finish_reason":"SAFETY"}]}'
    )
    assert isinstance(both, gemini_wire.Chunk) and both.candidates is not None
    assert both.candidates[0].finish_reason == "STOP"
    null_camel = dec('{"candidates":[{"finish_reason":"SAFETY","finishReason":null}]}')
    assert isinstance(null_camel, gemini_wire.Chunk) and null_camel.candidates is not None
    assert null_camel.candidates[0].finish_reason == "SAFETY"


def test_unknown_fields_are_ignored() -> None:
    extra = {
        "candidates": [
            {
                "content": {"parts": [{"text": "hi", "partMetadata": {"x": 1}}], "role": "model"},
                "safetyRatings": [{"category": "HARM_CATEGORY_HATE_SPEECH", "probability": "NEGLIGIBLE"}],
                "citationMetadata": {"citationSources": []},
                "finishReason": "STOP",
                "avgLogprobs": -0.1,
            }
        ],
        "usageMetadata": {
            "promptTokenCount": 2,
            "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 2}],
        },
        "modelVersion": "m",
        "responseId": "r",
        "createTime": "2026-01-01T00:00:00Z",
    }
    assert _run(extra) == [
        MessageStart(id="r", model="m", created=0),
        BlockStart(index=0, block=Text(text="")),
        TextDelta(index=0, text="hi"),
        BlockStop(index=0),
        MessageDelta(stop_reason=StopReason.END_TURN, usage=Usage(input_tokens=2)),
        MessageStop(),
    ]


def test_a_wrongly_shaped_field_costs_only_itself() -> None:
    parts = [{"text": 7}, "not a part", {"text": "kept"}, {"text": "also", "thought": "yes"}]
    evs = _run(
        {"responseId": "r", "candidates": [{"content": {"parts": parts}, "finishReason": 3}]},
        {
            "candidates": [{"finishReason": "STOP"}],
            "usageMetadata": {"promptTokenCount": "9", "totalTokenCount": 1},
        },
    )
    assert evs == [
        MessageStart(id="r", model="", created=0),
        BlockStart(index=0, block=Text(text="")),
        TextDelta(index=0, text="kept"),
        TextDelta(index=0, text="also"),  # `thought` that is not true is plain text
        BlockStop(index=0),
        MessageDelta(stop_reason=StopReason.END_TURN, usage=Usage()),
        MessageStop(),
    ]
    # a first candidate that is not an object is an empty one (not the second candidate)
    second = _run({"candidates": [5, {"content": {"parts": [{"text": "x"}]}}]})
    assert not any(isinstance(e, TextDelta) for e in second)


def test_errors_end_the_stream_with_their_kind() -> None:
    assert _run({"error": {"code": 429, "message": "quota", "status": "RESOURCE_EXHAUSTED"}}) == [
        StreamError(kind=ErrorKind.RATE_LIMITED, message="quota")
    ]
    assert _run({"error": "boom"}) == [StreamError(kind=ErrorKind.UPSTREAM, message="boom")]


def test_an_error_that_is_not_text_ends_the_stream_without_relaying_it() -> None:
    """The dict-walking reader relayed such a value's Python repr; now it is not relayed."""
    assert _run({"error": {"code": "429", "message": ["?"]}}) == [
        StreamError(kind=ErrorKind.UPSTREAM, message="upstream error")
    ]
    # an `error` that is not an object or text reads as absent: the stream still ends in an error
    odd = _run({"error": 5})
    assert [type(e) for e in odd] == [MessageStart, StreamError]
    assert odd[-1] == StreamError(kind=ErrorKind.UPSTREAM, message="Gemini stream ended before finishReason")


def test_a_function_call_that_is_not_an_object_is_no_call() -> None:
    evs = _run(
        {"candidates": [{"content": {"parts": [{"functionCall": 5, "text": "t"}]}, "finishReason": "STOP"}]}
    )
    assert [type(e) for e in evs] == [
        MessageStart,
        BlockStart,
        TextDelta,
        BlockStop,
        MessageDelta,
        MessageStop,
    ]
    assert evs[-2] == MessageDelta(stop_reason=StopReason.END_TURN, usage=Usage())


def test_malformed_payloads() -> None:
    assert gemini_wire.decode("{nope") == Invalid(json=False)
    assert gemini_wire.decode("[1, 2]") == Invalid(json=True)
    assert _run(b"{nope") == [
        StreamError(kind=ErrorKind.UPSTREAM, message="Gemini sent a malformed stream chunk")
    ]
    # JSON that is not an object carries nothing (not even the start of a message)
    assert _run([1, 2]) == [
        StreamError(kind=ErrorKind.UPSTREAM, message="Gemini stream ended before finishReason")
    ]
    # a number no double holds, in function args (kept raw) or a typed field: malformed, as orjson said
    huge = b'{"candidates":[{"content":{"parts":[{"functionCall":{"name":"f","args":{"x":1e400}}}]}}]}'
    assert _run(huge)[-1] == StreamError(
        kind=ErrorKind.UPSTREAM, message="Gemini sent a malformed stream chunk"
    )
    assert _run(b'{"usage_metadata":{"prompt_token_count":1e400}}') == [
        StreamError(kind=ErrorKind.UPSTREAM, message="Gemini sent a malformed stream chunk")
    ]


def test_function_args_serialise_as_before() -> None:
    big = b'{"candidates":[{"content":{"parts":[{"functionCall":{"name":"f","args":{"n":123456789012345678901234567890,"f":1e16}}}]}}]}'
    args = [e for e in _run(big) if isinstance(e, ToolArgsDelta)]
    assert args == [ToolArgsDelta(index=0, json='{"n":1.2345678901234568e+29,"f":1e+16}')]
    empty = _run({"candidates": [{"content": {"parts": [{"functionCall": {"name": "f", "args": None}}]}}]})
    assert [e for e in empty if isinstance(e, ToolArgsDelta)] == [ToolArgsDelta(index=0, json="{}")]
