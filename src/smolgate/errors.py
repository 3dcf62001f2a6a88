"""One exception tree for the whole gateway.

Every failure is a `GatewayError` with a canonical `kind`; each protocol module renders it in its own
error shape. Upstream errors are mapped to a kind at one boundary (providers), so the server never sees
a raw transport exception. Messages must never contain secrets: they reach clients verbatim.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass


class ErrorKind(enum.StrEnum):
    INVALID_REQUEST = "invalid_request"  # 400: the client's fault, never retried
    AUTH = "auth"  # 401
    PERMISSION = "permission"  # 403
    NOT_FOUND = "not_found"  # 404 (unknown model, unknown route)
    TOO_LARGE = "too_large"  # 413
    RATE_LIMITED = "rate_limited"  # 429, carries retry_after
    QUOTA = "quota"  # a virtual key's budget is spent: each protocol's billing/quota error, never retried
    OVERLOADED = "overloaded"  # 529/503: capacity exhausted upstream
    UPSTREAM = "upstream"  # 502: upstream failed or spoke nonsense
    TIMEOUT = "timeout"  # 504
    INTERNAL = "internal"  # 500: our bug; message is generic


CONTEXT_LENGTH_EXCEEDED = "context_length_exceeded"  # GatewayError.code: the prompt does not fit the model


@dataclass(frozen=True, slots=True)
class ContextOverflow:
    """Token counts behind a context_length_exceeded error, when known; each codec words them its own way."""

    prompt_tokens: int | None = None
    limit: int | None = None
    max_tokens: int | None = None  # set when the prompt fits but prompt + the client's max_tokens does not


DEFAULT_STATUS: dict[ErrorKind, int] = {
    ErrorKind.INVALID_REQUEST: 400,
    ErrorKind.AUTH: 401,
    ErrorKind.PERMISSION: 403,
    ErrorKind.NOT_FOUND: 404,
    ErrorKind.TOO_LARGE: 413,
    ErrorKind.RATE_LIMITED: 429,
    ErrorKind.QUOTA: 429,
    ErrorKind.OVERLOADED: 503,
    ErrorKind.UPSTREAM: 502,
    ErrorKind.TIMEOUT: 504,
    ErrorKind.INTERNAL: 500,
}


class GatewayError(Exception):
    """A failure with a canonical kind. `param` names the offending field for 400s."""

    def __init__(
        self,
        kind: ErrorKind,
        message: str,
        *,
        param: str | None = None,
        retry_after: float | None = None,
        status: int | None = None,
        upstream_status: int | None = None,
        upstream_headers: Mapping[str, str] | None = None,
        code: str | None = None,
        overflow: ContextOverflow | None = None,
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.param = param
        self.retry_after = retry_after
        self.status = status or DEFAULT_STATUS[kind]
        self.upstream_status = upstream_status
        self.upstream_headers = upstream_headers  # for the pool (rate-limit headers); never sent on
        self.code = code  # a finer machine-readable reason within the kind (CONTEXT_LENGTH_EXCEEDED)
        self.overflow = overflow

    @property
    def retryable(self) -> bool:
        """Whether another account/target might succeed where this attempt failed."""
        return self.kind in (
            ErrorKind.RATE_LIMITED,
            ErrorKind.OVERLOADED,
            ErrorKind.UPSTREAM,
            ErrorKind.TIMEOUT,
            ErrorKind.AUTH,  # a bad key on one account says nothing about the next account
            ErrorKind.PERMISSION,
        )

    def __repr__(self) -> str:
        return f"GatewayError({self.kind.value}, {self.message!r}, status={self.status})"


def shown(text: str, instead: str) -> str:
    """Client-chosen text as an error message may quote it: short and printable, else `instead` (a message is
    also logged: a newline in it must not forge a log line)."""
    return text if len(text) <= 80 and text.isprintable() else instead


def invalid(message: str, param: str | None = None) -> GatewayError:
    return GatewayError(ErrorKind.INVALID_REQUEST, message, param=param)


def not_found(message: str) -> GatewayError:
    return GatewayError(ErrorKind.NOT_FOUND, message)


def context_overflow(
    prompt_tokens: int | None, limit: int | None, max_tokens: int | None = None, message: str | None = None
) -> GatewayError:
    """A 400 `context_length_exceeded`: the prompt (plus the client's max_tokens, when given) does not fit."""
    if message is None:
        head = f"This model's maximum context length is {limit} tokens. However, "
        if max_tokens is not None and prompt_tokens is not None:
            message = (
                f"{head}you requested {prompt_tokens + max_tokens} tokens ({prompt_tokens} in the "
                f"messages, {max_tokens} in the completion). Please reduce the length of the messages "
                "or completion."
            )
        else:
            message = (
                f"{head}your messages resulted in {prompt_tokens} tokens. "
                "Please reduce the length of the messages."
            )
    return GatewayError(
        ErrorKind.INVALID_REQUEST,
        message,
        code=CONTEXT_LENGTH_EXCEEDED,
        overflow=ContextOverflow(prompt_tokens, limit, max_tokens),
    )


# How each upstream words "prompt too long" (counts where it gives them), so every client gets its own form.
_N = r"(\d[\d,]*)"
_MAX_CTX = rf"maximum context length is {_N} tokens"


def _rx(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern, re.I)


_OVERFLOW_PATTERNS: list[tuple[re.Pattern[str], tuple[str, ...]]] = [
    (_rx(rf"prompt is too long: {_N} tokens > {_N}"), ("prompt", "limit")),  # Anthropic
    (
        _rx(rf"input length and `max_tokens` exceed context limit: {_N} \+ {_N} > {_N}"),
        ("prompt", "max", "limit"),
    ),  # Anthropic, prompt + max_tokens
    (
        _rx(
            rf"{_MAX_CTX}\. However, you requested {_N} tokens \({_N} in the messages, {_N} in the completion"
        ),
        ("limit", "", "prompt", "max"),
    ),  # OpenAI, vLLM
    (_rx(rf"{_MAX_CTX}\. However, your messages resulted in {_N} tokens"), ("limit", "prompt")),  # OpenAI
    (
        _rx(rf"is too large: {_N}\. This model's {_MAX_CTX} and your request has {_N} input tokens"),
        ("max", "limit", "prompt"),
    ),  # vLLM, prompt + max_tokens
    (_rx(rf"{_MAX_CTX} and your request has {_N} input tokens"), ("limit", "prompt")),  # vLLM
    (
        _rx(rf"input token count \({_N}\) exceeds the maximum number of tokens allowed \({_N}\)"),
        ("prompt", "limit"),
    ),  # Gemini
    (
        _rx(
            r"exceeds the context window|context[ _]length[ _]exceeded|prompt is too long|longer than the "
            r"context length|input length exceeds the context length|exceeds the available context size|"
            r"maximum context length"
        ),
        (),
    ),  # Responses, Ollama, llama.cpp: no counts
]


def overflow_from_message(message: str) -> ContextOverflow | None:
    """The counts in an upstream's "prompt too long" message (None when it is about something else)."""
    for rx, names in _OVERFLOW_PATTERNS:
        m = rx.search(message)
        if m is None:
            continue
        got = {
            n: int(v.replace(",", "")) for n, v in zip(names, m.groups(), strict=True) if n
        }  # a name per group
        return ContextOverflow(got.get("prompt"), got.get("limit"), got.get("max"))
    return None


def from_status(status: int, message: str, retry_after: float | None = None) -> GatewayError:
    """Map an upstream HTTP status to a canonical error (used by every upstream decoder)."""
    if status in (400, 413, 422) and (overflow := overflow_from_message(message)) is not None:
        out = context_overflow(overflow.prompt_tokens, overflow.limit, overflow.max_tokens, message)
        out.upstream_status = status
        return out
    if status == 429:
        return GatewayError(ErrorKind.RATE_LIMITED, message, retry_after=retry_after, upstream_status=status)
    if status in (401, 403):
        # The upstream rejected *our* credentials: the client's own key is fine, so it sees a 502.
        kind = ErrorKind.AUTH if status == 401 else ErrorKind.PERMISSION
        return GatewayError(kind, message, status=502, upstream_status=status)
    if status == 404:
        return GatewayError(ErrorKind.NOT_FOUND, message, upstream_status=status)
    if status == 413:
        return GatewayError(ErrorKind.TOO_LARGE, message, upstream_status=status)
    if status in (400, 422):
        return GatewayError(ErrorKind.INVALID_REQUEST, message, upstream_status=status)
    if status in (503, 529):
        return GatewayError(ErrorKind.OVERLOADED, message, retry_after=retry_after, upstream_status=status)
    if status in (408, 504):
        return GatewayError(ErrorKind.TIMEOUT, message, upstream_status=status)
    return GatewayError(ErrorKind.UPSTREAM, message, upstream_status=status)
