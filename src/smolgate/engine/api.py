"""The engine's boundary: what a caller (the gateway's local provider) sends, gets back, and may be told.

Torch-free on purpose: the gateway imports this module (and nothing else of the engine) to type its handle, so
it installs and runs without the engine's dependencies. `Engine` (engine.py) implements `LocalEngine`.

Errors, one tree (`EngineError`):
- `InputInvalid`   the request cannot be served as given (bad media, parameters, schema)   -> a client error
- `ContextTooLong` prompt (+ max_tokens) does not fit; carries the numbers to say so         -> a client error
- `Busy`           every slot taken and the wait queue full; try again after `retry_after`  -> overloaded
- `EngineInternal` anything else that went wrong inside                                     -> internal
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol, TypeAlias

from .cpu import Choice
from .messages import ChatMessage, ImagePart, Part, Role, TextPart, VideoPart

__all__ = [
    "Busy",
    "ChatMessage",
    "Chunk",
    "ContextTooLong",
    "EngineError",
    "EngineInternal",
    "EngineRequest",
    "EngineStats",
    "EngineUsage",
    "FinishReason",
    "ImagePart",
    "InputInvalid",
    "JsonSpec",
    "LocalEngine",
    "Part",
    "Role",
    "TextPart",
    "VideoPart",
]

FinishReason: TypeAlias = Literal["stop", "length", "stop_sequence", "cancelled"]


@dataclass(frozen=True, slots=True)
class JsonSpec:
    """Constrain the output to JSON: a value matching `schema` (None: any JSON object). The engine builds the
    token-level constraint from its own tokenizer."""

    schema: Mapping[str, Any] | bool | None = None


@dataclass(frozen=True, slots=True)
class EngineStats:
    """What the engine is doing now (read by the gateway's metrics at scrape time, not per token)."""

    batch: int  # generations in the current decode batch
    waiting: int  # admitted requests not yet decoding (queued or being prefilled)
    generated_tokens: int  # tokens generated since start (monotonic)


@dataclass(frozen=True, slots=True)
class EngineRequest:
    """One generation. max_tokens None: up to the end of the context. strict_length: a max_tokens that does not
    fit beside the prompt raises ContextTooLong instead of being shortened."""

    messages: Sequence[ChatMessage]
    max_tokens: int | None = 256
    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0
    seed: int | None = None
    repetition_penalty: float = 1.0
    stop: Sequence[str] = ()
    strict_length: bool = False
    constraint: JsonSpec | None = None
    adapter: str | None = None  # a loaded LoRA adapter's name (Engine.load_adapter); None: the base model


@dataclass(frozen=True, slots=True)
class EngineUsage:
    prompt_tokens: int
    completion_tokens: int


@dataclass(frozen=True, slots=True)
class Chunk:
    """Newly settled text; the last chunk of a generation has finish_reason and usage set."""

    text: str
    finish_reason: FinishReason | None = None
    stop_sequence: str | None = None
    usage: EngineUsage | None = None


class EngineError(Exception):
    """Base of every error the engine raises to its caller."""


class InputInvalid(EngineError, ValueError):
    """The request cannot be served as given; `param` names the offending input when known."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.message, self.param = message, param


class ContextTooLong(EngineError, ValueError):
    """The prompt leaves no room to generate within `limit` positions (with strict_length: no room for the
    max_tokens asked for)."""

    def __init__(
        self, prompt_tokens: int, limit: int, max_tokens: int | None = None, message: str | None = None
    ) -> None:
        asked = f" + max_tokens {max_tokens}" if max_tokens is not None else ""
        super().__init__(
            message or f"prompt has {prompt_tokens} tokens{asked}; the context length is {limit}"
        )
        self.prompt_tokens, self.limit, self.max_tokens = prompt_tokens, limit, max_tokens


class Busy(EngineError):
    """No room for another request now; retry after `retry_after` seconds."""

    def __init__(self, message: str, retry_after: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class EngineInternal(EngineError):
    """An unexpected failure inside the engine (the cause is chained)."""


class LocalEngine(Protocol):
    """What the gateway needs from an embedded engine.

    `submit` returns once the request is admitted (input errors, ContextTooLong and Busy raise here, before any
    output). Iterate the result for chunks; closing it early (`aclose`), dropping it, or cancelling the task that
    awaits it abandons the generation, and its slot is freed at the engine's next step.
    """

    @property
    def model_id(self) -> str: ...

    @property
    def context_length(self) -> int: ...

    @property
    def supports_images(self) -> bool: ...

    @property
    def supports_video(self) -> bool: ...

    @property
    def choice(self) -> Choice: ...  # the dtype and quantization it runs with, and why (cpu.py)

    async def submit(self, req: EngineRequest) -> AsyncIterator[Chunk]: ...

    async def count_tokens(self, req: EngineRequest) -> int: ...

    def load_adapter(self, name: str, path: str) -> None: ...

    def unload_adapter(self, name: str) -> None: ...

    def close(self) -> None: ...
