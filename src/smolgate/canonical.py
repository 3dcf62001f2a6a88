"""The canonical model: every wire protocol meets every other only through these types.

A protocol module decodes its wire format into these structs and encodes them back out; nothing else
crosses a module boundary. Structs are msgspec (fast to build, typed, immutable by convention).

Conventions shared by all codecs:
- `Usage.input_tokens` counts *all* prompt tokens, cached ones included (OpenAI's convention); the
  Anthropic codec subtracts `cached_tokens` / `cache_creation_tokens` when it renders.
- `ToolCall.arguments` is JSON *text* (OpenAI's convention); object-based protocols dump/load it.
- System prompts are hoisted into `Request.system`; messages hold only `user` and `assistant` turns.
  Tool results are `ToolResult` blocks inside a `user` message (Anthropic's convention).
"""

from __future__ import annotations

import enum
from typing import Any, Literal

import msgspec

from .errors import ErrorKind


class Struct(msgspec.Struct, kw_only=True, omit_defaults=True):
    pass


# ---------------------------------------------------------------- content blocks


class Text(Struct, tag="text"):
    text: str
    cache: str | None = None  # a prompt-cache breakpoint after this block: "ephemeral" or a ttl ("5m", "1h")


class Image(Struct, tag="image"):
    """An image as inline bytes or a URL (exactly one is set). `media_type` like "image/png"."""

    data: bytes | None = None
    url: str | None = None
    media_type: str | None = None
    detail: str | None = None  # OpenAI's low|high|auto hint, kept for OpenAI-to-OpenAI fidelity
    cache: str | None = None  # prompt-cache breakpoint, as on Text


class Video(Struct, tag="video"):
    data: bytes | None = None
    url: str | None = None
    media_type: str | None = None


class ToolCall(Struct, tag="tool_call"):
    id: str
    name: str
    arguments: str = "{}"  # JSON text
    signature: str | None = None  # Gemini thoughtSignature riding on the call part
    cache: str | None = None  # prompt-cache breakpoint, as on Text


class ToolResult(Struct, tag="tool_result"):
    call_id: str
    content: list[Text | Image] = msgspec.field(default_factory=list)
    is_error: bool = False
    name: str | None = None  # Gemini keys results by function name; filled when known
    cache: str | None = None  # prompt-cache breakpoint, as on Text


class Reasoning(Struct, tag="reasoning"):
    """Model reasoning. `signature` (Anthropic) / opaque `redacted` data replay only to their maker."""

    text: str = ""
    signature: str | None = None
    redacted: str | None = None  # Anthropic redacted_thinking.data or Responses encrypted_content


class Opaque(Struct, tag="opaque"):
    """An item with no canonical meaning (a Responses `web_search_call`, `mcp_call`, …) kept in its place in
    the conversation: replayed as it is to an upstream of `protocol`; every other encoder skips it."""

    protocol: str
    data: dict[str, Any]


Block = Text | Image | Video | ToolCall | ToolResult | Reasoning | Opaque


class Message(Struct):
    role: Literal["user", "assistant"]
    content: list[Block]


# ---------------------------------------------------------------- request


class Tool(Struct):
    name: str
    description: str | None = None
    parameters: dict[str, Any] = msgspec.field(default_factory=lambda: {"type": "object", "properties": {}})
    cache: str | None = None  # prompt-cache breakpoint after this tool definition, as on Text
    # Responses tool kinds (tool_kinds.py): every codec sees a function; the Responses codec reverses it.
    kind: Literal["function", "custom"] = "function"  # custom: free-form text, as one string argument "input"
    namespace: str | None = None  # a Responses namespace; `name` is then the flat tool_kinds.flat_name
    local_name: str | None = None  # the name inside `namespace`
    raw: dict[str, Any] | None = None  # Responses definition keys with no canonical field (strict, format, …)


class ToolChoice(Struct):
    mode: Literal["auto", "none", "required", "tool"] = "auto"
    name: str | None = None  # set when mode == "tool"
    parallel: bool | None = None


class ResponseFormat(Struct):
    type: Literal["text", "json_object", "json_schema"] = "text"
    schema: dict[str, Any] | None = None
    name: str | None = None
    strict: bool | None = None


class ReasoningConfig(Struct):
    """What the client asked of the model's reasoning; `reasoning.py` maps levels between protocols.

    `hint` marks a preference that is not a request to reason (Anthropic `output_config.effort` without
    `thinking`, Gemini `includeThoughts` alone, a Responses `reasoning.summary` alone): it reaches an
    upstream only for targets known to reason (config `reasoning: true`).
    """

    enabled: bool = True
    effort: str | None = None  # none|minimal|low|medium|high|xhigh|max
    budget_tokens: int | None = None
    include_thoughts: bool | None = None
    hint: bool = False


class Origin(Struct):
    """Who sent a request: the client protocol and an opaque id of the client key (a hash, never the key).

    Set by the server for the generation routes; `signatures.py` scopes stored reasoning state by it."""

    protocol: str
    owner: str = ""
    privacy: str | None = None  # the policy its key and the request itself ask for (policies/privacy.py)


# ---------------------------------------------------------------- extras: settings with no canonical field
#
# Each protocol's decoder keeps here what its own upstream encoder replays verbatim (and nothing else reads,
# except where noted); other protocols' encoders ignore them.


class AnthropicExtras(Struct):
    thinking: dict[str, Any] | None = None  # the client's `thinking` config as sent (reasoning.py strips it)
    effort: str | None = None  # output_config.effort (reasoning.py strips it)
    output_config: dict[str, Any] = msgspec.field(default_factory=dict)  # its other keys
    # mid-conversation system messages: (start, end, position) = system[start:end] stood before messages[position]
    system_positions: list[tuple[int, int, int]] = msgspec.field(default_factory=list)
    billing_header: str | None = None  # Claude Code's attribution line, first in `system`
    server_tools: list[dict[str, Any]] = msgspec.field(default_factory=list)  # web_search_*, bash_*, …
    beta: str | None = None  # the `anthropic-beta` header
    passthrough: dict[str, Any] = msgspec.field(default_factory=dict)  # body keys with no canonical field


class OpenAIExtras(Struct):
    include_usage: bool = False  # stream_options.include_usage (the Chat stream encoder reads it)
    passthrough: dict[str, Any] = msgspec.field(default_factory=dict)


class GeminiExtras(Struct):
    safety_settings: list[Any] = msgspec.field(default_factory=list)
    thinking_level: str | None = None  # thinkingConfig.thinkingLevel as the client spelled it


class ResponsesClient(Struct):
    """What a Responses client asked of the answer rather than of the model (the encoders and the
    server's response store read it)."""

    include: list[str] = msgspec.field(default_factory=list)
    store: bool = True
    previous_response_id: str | None = None


class ResponsesExtras(Struct):
    client: ResponsesClient | None = None  # None: the request did not come from a Responses client
    params: dict[str, Any] = msgspec.field(default_factory=dict)  # Responses-only parameters
    hosted_tools: list[dict[str, Any]] = msgspec.field(
        default_factory=list
    )  # web_search, mcp, … (tool_kinds)
    namespaces: dict[str, str] = msgspec.field(default_factory=dict)  # namespace name → description
    tool_choice: str | dict[str, Any] | None = None  # a tool_choice with no canonical form, as sent


class OllamaExtras(Struct):
    suffix: str | None = None  # /api/generate `suffix`


class Extras(Struct):
    """Provider pass-through, one typed member per protocol, never interpreted across protocols."""

    anthropic: AnthropicExtras = msgspec.field(default_factory=AnthropicExtras)
    openai: OpenAIExtras = msgspec.field(default_factory=OpenAIExtras)
    gemini: GeminiExtras = msgspec.field(default_factory=GeminiExtras)
    responses: ResponsesExtras = msgspec.field(default_factory=ResponsesExtras)
    ollama: OllamaExtras = msgspec.field(default_factory=OllamaExtras)


class Request(Struct):
    model: str
    messages: list[Message]
    system: list[Text] = msgspec.field(default_factory=list)
    tools: list[Tool] = msgspec.field(default_factory=list)
    tool_choice: ToolChoice | None = None
    response_format: ResponseFormat | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    stop: list[str] = msgspec.field(default_factory=list)
    seed: int | None = None
    stream: bool = False
    reasoning: ReasoningConfig | None = None
    metadata: dict[str, Any] = msgspec.field(default_factory=dict)
    extras: Extras = msgspec.field(default_factory=Extras)  # provider pass-through, never interpreted
    origin: Origin | None = None  # set by the server, never by a decoder (signatures.py)

    @property
    def system_text(self) -> str:
        return "\n\n".join(t.text for t in self.system)


# ---------------------------------------------------------------- response


class StopReason(enum.StrEnum):
    END_TURN = "end_turn"
    MAX_TOKENS = "max_tokens"
    STOP_SEQUENCE = "stop_sequence"
    TOOL_USE = "tool_use"
    CONTENT_FILTER = "content_filter"


class Usage(Struct):
    input_tokens: int = 0  # includes cached tokens
    output_tokens: int = 0  # includes reasoning tokens
    cached_tokens: int = 0
    cache_creation_tokens: int = 0
    cache_creation_1h_tokens: int = 0  # the part written with a 1-hour TTL (Anthropic bills it 2×, not 1.25×)
    reasoning_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


class Response(Struct):
    id: str
    model: str
    content: list[Block]
    stop_reason: StopReason = StopReason.END_TURN
    stop_sequence: str | None = None
    usage: Usage = msgspec.field(default_factory=Usage)
    created: int = 0  # unix seconds


# ---------------------------------------------------------------- stream events
#
# Modelled on the richest protocol (Anthropic): message start → (block start → deltas → block stop)* →
# message delta (stop reason, usage) → message stop. Block indices are sequential and never interleave;
# every encoder is a small state machine over these events.


class MessageStart(Struct, tag="message_start"):
    id: str
    model: str
    usage: Usage | None = None  # prompt-side usage when the upstream tells it early
    created: int = 0


class BlockStart(Struct, tag="block_start"):
    index: int
    block: Text | ToolCall | Reasoning  # initial state: empty text / call with id+name and "" arguments


class TextDelta(Struct, tag="text_delta"):
    index: int
    text: str


class ToolArgsDelta(Struct, tag="tool_args_delta"):
    index: int
    json: str  # a fragment of the arguments JSON text


class ReasoningDelta(Struct, tag="reasoning_delta"):
    index: int
    text: str


class SignatureDelta(Struct, tag="signature_delta"):
    index: int
    signature: str


class BlockStop(Struct, tag="block_stop"):
    index: int


class MessageDelta(Struct, tag="message_delta"):
    stop_reason: StopReason | None = None
    stop_sequence: str | None = None
    usage: Usage | None = None  # cumulative, final when message_stop follows


class MessageStop(Struct, tag="message_stop"):
    pass


class StreamError(Struct, tag="error"):
    """A failure after the stream began; encoders render it as their in-stream error form."""

    kind: ErrorKind
    message: str


Event = (
    MessageStart
    | BlockStart
    | TextDelta
    | ToolArgsDelta
    | ReasoningDelta
    | SignatureDelta
    | BlockStop
    | MessageDelta
    | MessageStop
    | StreamError
)


def link_tool_results(messages: list[Message]) -> None:
    """Fill `ToolResult.name` from the `ToolCall` with the same id earlier in the conversation.

    Gemini keys function results by *name*, OpenAI and Anthropic by *id*; decoders of id-based protocols
    call this so an encoder for a name-based protocol always knows the name.
    """
    names: dict[str, str] = {}
    for msg in messages:
        for i, block in enumerate(msg.content):
            if isinstance(block, ToolCall):
                names[block.id] = block.name
            elif isinstance(block, ToolResult) and block.name is None and block.call_id in names:
                msg.content[i] = msgspec.structs.replace(block, name=names[block.call_id])
