"""Anthropic Messages stream events as typed wire structs, in the order of the streaming spec.

Optional fields have defaults and unknown fields are ignored, so a newer API version still decodes;
`usage` counts use `UNSET` because an absent count keeps the previous value while a `null` one is zero.
"""

from __future__ import annotations

import msgspec
from msgspec import UNSET, UnsetType

from .wire import EventDecoder, Wire

Count = int | None | UnsetType


class OutputDetails(msgspec.Struct):
    thinking_tokens: int | None = None


class CacheCreation(msgspec.Struct):
    """`cache_creation_input_tokens` split by TTL (priced differently)."""

    ephemeral_5m_input_tokens: int | None = None
    ephemeral_1h_input_tokens: int | None = None


class WireUsage(msgspec.Struct):
    input_tokens: Count = UNSET
    output_tokens: Count = UNSET
    cache_creation_input_tokens: Count = UNSET
    cache_read_input_tokens: Count = UNSET
    cache_creation: CacheCreation | None = None
    output_tokens_details: OutputDetails | None = None


class WireMessage(msgspec.Struct):
    id: str | None = None
    model: str | None = None
    usage: WireUsage | None = None


# ---- content blocks (content_block_start) and their deltas (content_block_delta)


class TextBlock(Wire, tag="text"):
    text: str | None = None


class ToolUseBlock(Wire, tag="tool_use"):
    id: str | None = None
    name: str | None = None
    input: dict[str, object] | None = None


class ThinkingBlock(Wire, tag="thinking"):
    thinking: str | None = None


class RedactedThinkingBlock(Wire, tag="redacted_thinking"):
    data: str | None = None


ContentBlock = TextBlock | ToolUseBlock | ThinkingBlock | RedactedThinkingBlock
BLOCKS: EventDecoder[ContentBlock] = EventDecoder(
    ContentBlock, ("text", "tool_use", "thinking", "redacted_thinking")
)


class TextDelta(Wire, tag="text_delta"):
    text: str = ""


class InputJsonDelta(Wire, tag="input_json_delta"):
    partial_json: str = ""


class ThinkingDelta(Wire, tag="thinking_delta"):
    thinking: str = ""


class SignatureDelta(Wire, tag="signature_delta"):
    signature: str = ""


Delta = TextDelta | InputJsonDelta | ThinkingDelta | SignatureDelta


# ---- stream events


class MessageStart(Wire, tag="message_start"):
    message: WireMessage = msgspec.field(default_factory=WireMessage)


class ContentBlockStart(Wire, tag="content_block_start"):
    index: int | None = None
    # decoded apart with BLOCKS: an unknown block type (server tools, …) is skipped, not fatal
    content_block: msgspec.Raw = msgspec.field(default_factory=lambda: msgspec.Raw(b"null"))


class Ping(Wire, tag="ping"):
    pass


class ContentBlockDelta(Wire, tag="content_block_delta"):
    index: int | None = None
    delta: Delta | None = None


class ContentBlockStop(Wire, tag="content_block_stop"):
    index: int | None = None


class StopInfo(msgspec.Struct):
    stop_reason: str | None = None
    stop_sequence: str | None = None


class MessageDelta(Wire, tag="message_delta"):
    delta: StopInfo | None = None
    usage: WireUsage | None = None


class MessageStop(Wire, tag="message_stop"):
    pass


class ErrorBody(msgspec.Struct):
    type: str | None = None
    message: str | None = None


class Error(Wire, tag="error"):
    error: ErrorBody = msgspec.field(default_factory=ErrorBody)


Event = (
    MessageStart
    | ContentBlockStart
    | Ping
    | ContentBlockDelta
    | ContentBlockStop
    | MessageDelta
    | MessageStop
    | Error
)
EVENTS: EventDecoder[Event] = EventDecoder(
    Event,
    (
        "message_start",
        "content_block_start",
        "ping",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
        "error",
    ),
)
