"""OpenAI Responses stream events as typed wire structs, in the order a response streams them.

Only the events the decoder acts on are modelled; the rest (`*.done` text events, hosted-tool progress, …)
decode as `wire.Unknown` and are skipped. Output items stay JSON objects: hosted-tool items are carried
whole (`Opaque`), so their shape is the upstream's business, not ours.
"""

from __future__ import annotations

from typing import Any

import msgspec

from .wire import EventDecoder, Wire

Fragment = str | dict[str, Any] | list[Any] | None  # argument text; a JSON value from lenient servers


class ErrorBody(msgspec.Struct):
    code: str | int | None = None  # some servers put the HTTP status here
    type: str | None = None
    message: str | None = None


class IncompleteDetails(msgspec.Struct):
    reason: str | None = None


class ResponseObject(msgspec.Struct):
    id: str | None = None
    model: str | None = None
    created_at: int | float | None = None
    status: str | None = None
    incomplete_details: IncompleteDetails | None = None
    usage: dict[str, Any] | None = None  # read by openai_common.usage_from_responses, shared with replies
    error: ErrorBody | None = None


class Part(msgspec.Struct):
    type: str | None = None


# ---- lifecycle


class Created(Wire, tag="response.created"):
    response: ResponseObject = msgspec.field(default_factory=ResponseObject)


class InProgress(Created, tag="response.in_progress"):
    pass


class Queued(Created, tag="response.queued"):
    pass


# ---- output items and their content


class ItemAdded(Wire, tag="response.output_item.added"):
    item: dict[str, Any] | None = None


class PartAdded(Wire, tag="response.content_part.added"):
    item_id: str | None = None
    content_index: int | None = None
    part: Part | None = None


class TextDelta(Wire, tag="response.output_text.delta"):
    item_id: str | None = None
    content_index: int | None = None
    delta: str | None = None


class RefusalDelta(TextDelta, tag="response.refusal.delta"):
    pass


class ArgsDelta(Wire, tag="response.function_call_arguments.delta"):
    item_id: str | None = None
    delta: Fragment = None


class ArgsDone(Wire, tag="response.function_call_arguments.done"):
    item_id: str | None = None
    arguments: Fragment = None


class CustomInputDelta(Wire, tag="response.custom_tool_call_input.delta"):
    item_id: str | None = None
    delta: str | None = None


class SummaryDelta(Wire, tag="response.reasoning_summary_text.delta"):
    item_id: str | None = None
    summary_index: int | None = None
    delta: str | None = None


class ReasoningTextDelta(SummaryDelta, tag="response.reasoning_text.delta"):
    pass


class ItemDone(Wire, tag="response.output_item.done"):
    item: dict[str, Any] | None = None


# ---- the end


class Completed(Wire, tag="response.completed"):
    response: ResponseObject = msgspec.field(default_factory=ResponseObject)


class Incomplete(Completed, tag="response.incomplete"):
    pass


class Failed(Wire, tag="response.failed"):
    response: ResponseObject = msgspec.field(default_factory=ResponseObject)


class Error(Wire, tag="error"):
    error: ErrorBody | None = None  # the body, or (older servers) its fields on the event itself
    code: str | int | None = None
    message: str | None = None

    @property
    def body(self) -> ErrorBody:
        return self.error or ErrorBody(code=self.code, message=self.message)


Event = (
    Created
    | InProgress
    | Queued
    | ItemAdded
    | PartAdded
    | TextDelta
    | RefusalDelta
    | ArgsDelta
    | ArgsDone
    | CustomInputDelta
    | SummaryDelta
    | ReasoningTextDelta
    | ItemDone
    | Completed
    | Incomplete
    | Failed
    | Error
)
EVENTS: EventDecoder[Event] = EventDecoder(
    Event,
    (
        "response.created",
        "response.in_progress",
        "response.queued",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.refusal.delta",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.custom_tool_call_input.delta",
        "response.reasoning_summary_text.delta",
        "response.reasoning_text.delta",
        "response.output_item.done",
        "response.completed",
        "response.incomplete",
        "response.failed",
        "error",
    ),
)
