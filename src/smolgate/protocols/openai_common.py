"""Pieces OpenAI Chat Completions and OpenAI Responses share: error bodies, usage, stop reasons, images.

Both APIs use the same error body `{"error":{message,type,param,code}}` and the same SDK retry rules
(`x-should-retry`, `retry-after`), so error rendering and upstream error decoding live here once.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from .. import reasoning, retry_after
from ..canonical import Image, ReasoningConfig, StopReason, ToolChoice, Usage, Video
from ..errors import CONTEXT_LENGTH_EXCEEDED, ErrorKind, GatewayError, context_overflow, from_status, invalid
from .base import ErrorReply
from .common import check, check_http_url, field, parse_data_url

# ---------------------------------------------------------------- errors

ERROR_TYPES: dict[ErrorKind, str] = {
    ErrorKind.INVALID_REQUEST: "invalid_request_error",
    ErrorKind.AUTH: "authentication_error",
    ErrorKind.PERMISSION: "permission_error",
    ErrorKind.NOT_FOUND: "not_found_error",
    ErrorKind.TOO_LARGE: "invalid_request_error",
    ErrorKind.RATE_LIMITED: "rate_limit_error",
    ErrorKind.QUOTA: "insufficient_quota",  # OpenAI's own 429 when billing is exhausted (type and code)
    ErrorKind.OVERLOADED: "server_error",
    ErrorKind.UPSTREAM: "server_error",
    ErrorKind.TIMEOUT: "timeout_error",
    ErrorKind.INTERNAL: "server_error",
}
# Errors where another try may succeed: the SDK may retry these; everything else gets x-should-retry: false.
TRANSIENT = frozenset({ErrorKind.RATE_LIMITED, ErrorKind.OVERLOADED, ErrorKind.UPSTREAM, ErrorKind.TIMEOUT})

_TYPE_TO_KIND = {v: k for k, v in reversed(list(ERROR_TYPES.items()))}
_TYPE_TO_KIND.update(
    {
        "insufficient_quota": ErrorKind.RATE_LIMITED,
        "rate_limit_exceeded": ErrorKind.RATE_LIMITED,
        "invalid_api_key": ErrorKind.AUTH,
        "server_error": ErrorKind.UPSTREAM,
    }
)
_TYPE_TO_KIND.update({k.value: k for k in ErrorKind})  # our own `code` values round-trip exactly


def error_object(err: GatewayError) -> dict[str, Any]:
    return {
        "message": err.message,
        "type": ERROR_TYPES.get(err.kind, "server_error"),
        "param": err.param,
        "code": err.code or ("insufficient_quota" if err.kind is ErrorKind.QUOTA else err.kind.value),
    }


def encode_error(err: GatewayError, responses: bool = False) -> ErrorReply:
    headers = retry_after.render(err.retry_after)  # the server sets content-type itself
    if err.kind not in TRANSIENT:
        headers["x-should-retry"] = "false"
    obj = error_object(err)
    if err.code == CONTEXT_LENGTH_EXCEEDED:  # OpenAI's own wording and param, whoever reported the overflow
        o = err.overflow
        obj["param"] = "input" if responses else "messages"
        if responses:
            obj["message"] = (
                "Your input exceeds the context window of this model. Please adjust your input and try again."
            )
        elif o is not None and o.prompt_tokens is not None and o.limit is not None:
            obj["message"] = context_overflow(o.prompt_tokens, o.limit, o.max_tokens).message
    return ErrorReply(err.status, orjson.dumps({"error": obj}), headers)


def kind_from_error(err: Any) -> ErrorKind:
    """A canonical ErrorKind for an in-stream `{"error": {...}}` object."""
    if not isinstance(err, dict):
        return ErrorKind.UPSTREAM
    code, typ = err.get("code"), err.get("type")
    return kind_from_codes(code if isinstance(code, str) else None, typ if isinstance(typ, str) else None)


def kind_from_codes(code: str | None, typ: str | None) -> ErrorKind:
    """A canonical ErrorKind from an error's `code`, else its `type` (either may be absent)."""
    for value in (code, typ):
        kind = _TYPE_TO_KIND.get(value) if value is not None else None
        if kind is not None:
            return kind
    return ErrorKind.UPSTREAM


def error_message(err: Any, default: str = "upstream error") -> str:
    if isinstance(err, dict):
        msg = err.get("message")
        if isinstance(msg, str) and msg:
            return msg
    if isinstance(err, str) and err:
        return err
    return default


def decode_error(status: int, body: bytes, headers: Mapping[str, str]) -> GatewayError:
    """An upstream error reply → GatewayError, keeping the upstream's message and param."""
    message, param = "", None
    try:
        obj = orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        obj = None
    if isinstance(obj, dict):
        err = obj.get("error", obj)
        message = error_message(err, "")
        if isinstance(err, dict) and isinstance(err.get("param"), str):
            param = err["param"]
    if not message:
        text = body[:500].decode("utf-8", "replace").strip() if body else ""
        message = text or f"upstream returned HTTP {status}"
    out = from_status(status, message, retry_after.from_headers(headers))
    out.param = param
    return out


def upstream_bad(message: str) -> GatewayError:
    return GatewayError(ErrorKind.UPSTREAM, f"upstream sent an invalid reply: {message}")


# ---------------------------------------------------------------- usage / stop reasons

FINISH_REASONS = {
    StopReason.END_TURN: "stop",
    StopReason.STOP_SEQUENCE: "stop",
    StopReason.MAX_TOKENS: "length",
    StopReason.TOOL_USE: "tool_calls",
    StopReason.CONTENT_FILTER: "content_filter",
}
_FROM_FINISH = {
    "stop": StopReason.END_TURN,
    "length": StopReason.MAX_TOKENS,
    "tool_calls": StopReason.TOOL_USE,
    "function_call": StopReason.TOOL_USE,
    "content_filter": StopReason.CONTENT_FILTER,
    "refusal": StopReason.CONTENT_FILTER,
}


def stop_from_finish(reason: Any, has_tool_calls: bool) -> StopReason:
    stop = _FROM_FINISH.get(reason, StopReason.END_TURN) if isinstance(reason, str) else StopReason.END_TURN
    if has_tool_calls and stop is StopReason.END_TURN:
        stop = StopReason.TOOL_USE  # some OpenAI-compatible servers say "stop" after tool calls
    return stop


def _int(obj: Any, key: str) -> int:
    v = obj.get(key) if isinstance(obj, dict) else None
    return v if isinstance(v, int) and not isinstance(v, bool) and v >= 0 else 0


def _input_details(u: Usage) -> dict[str, int]:
    """`cached_tokens` (cache reads) plus, when an upstream reported cache writes (Anthropic), OpenRouter's
    `cache_write_tokens`; both are part of the prompt/input token count, as OpenAI counts cached tokens."""
    out = {"cached_tokens": u.cached_tokens}
    if u.cache_creation_tokens:
        out["cache_write_tokens"] = u.cache_creation_tokens
    return out


def chat_usage(u: Usage) -> dict[str, Any]:
    return {
        "prompt_tokens": u.input_tokens,
        "completion_tokens": u.output_tokens,
        "total_tokens": u.input_tokens + u.output_tokens,
        "prompt_tokens_details": _input_details(u),
        "completion_tokens_details": {"reasoning_tokens": u.reasoning_tokens},
    }


def _usage(obj: Any, inp: str, out: str, details: str, out_details: str) -> Usage:
    d = obj.get(details) if isinstance(obj, dict) else None
    return Usage(
        input_tokens=_int(obj, inp),
        output_tokens=_int(obj, out),
        cached_tokens=_int(d, "cached_tokens"),
        cache_creation_tokens=_int(d, "cache_write_tokens"),
        reasoning_tokens=_int(obj.get(out_details) if isinstance(obj, dict) else None, "reasoning_tokens"),
    )


def plain_tool_choice(tc: str | None, parallel: bool | None) -> ToolChoice | None:
    """`tool_choice` absent or a word (auto/none/required), alike in both OpenAI APIs (objects differ)."""
    if tc is None:
        return ToolChoice(parallel=parallel) if parallel is not None else None
    if tc not in ("auto", "none", "required"):
        raise invalid("'tool_choice' must be auto, none, required or an object", param="tool_choice")
    return ToolChoice(mode=tc, parallel=parallel)  # type: ignore[arg-type]  # checked above


def usage_from_chat(obj: Any) -> Usage:
    return _usage(
        obj, "prompt_tokens", "completion_tokens", "prompt_tokens_details", "completion_tokens_details"
    )


def responses_usage(u: Usage) -> dict[str, Any]:
    return {
        "input_tokens": u.input_tokens,
        "input_tokens_details": _input_details(u),
        "output_tokens": u.output_tokens,
        "output_tokens_details": {"reasoning_tokens": u.reasoning_tokens},
        "total_tokens": u.input_tokens + u.output_tokens,
    }


def usage_from_responses(obj: Any) -> Usage:
    return _usage(obj, "input_tokens", "output_tokens", "input_tokens_details", "output_tokens_details")


# ---------------------------------------------------------------- media, reasoning


def media_from_url(url: str, name: str, detail: str | None = None, video: bool = False) -> Image | Video:
    """A data: URL becomes inline bytes (size-checked); http(s) stays a URL; anything else is a 400."""
    if url.startswith("data:"):
        data, media_type = parse_data_url(url, name)
        return (
            Video(data=data, media_type=media_type)
            if video
            else Image(data=data, media_type=media_type, detail=detail)
        )
    if url[:8].lower().startswith(("http://", "https://")):
        check_http_url(url, name)
        return Video(url=url) if video else Image(url=url, detail=detail)
    raise invalid(f"'{name}' must be an http(s) URL or a base64 data: URL", param=name)


def media_url(block: Image | Video) -> str:
    if block.data is not None:
        from .common import data_url

        return data_url(block.data, block.media_type)
    return block.url or ""


def reasoning_from_effort(effort: str) -> ReasoningConfig:
    return ReasoningConfig(enabled=effort != "none", effort=effort)


def effort_for(cfg: ReasoningConfig | None) -> str | None:
    """Canonical reasoning settings → an OpenAI effort word (the table in reasoning.py)."""
    return reasoning.openai_effort(cfg)


def opt_number(d: dict[str, Any], key: str) -> float | None:
    number: float | None = field(d, key, float)  # an int stays an int (re-encoded as sent)
    return number


def str_list(value: Any, name: str) -> list[str]:
    if isinstance(value, str):
        return [value]
    check(value, list, name)
    return [check(v, str, f"{name}[{i}]") for i, v in enumerate(value)]


# A Gemini call's thoughtSignature in OpenAI Chat's shape, as Gemini's own OpenAI-compatible endpoint sends it
# (`tool_calls[].extra_content.google.thought_signature`): clients built for that endpoint echo it back, so
# the signature survives without the gateway's store (signatures.py covers the clients that drop it).


def thought_signature_out(call: dict[str, Any], block: Any) -> dict[str, Any]:
    sig = getattr(block, "signature", None)
    if isinstance(sig, str) and sig:
        call["extra_content"] = {"google": {"thought_signature": sig}}
    return call


def thought_signature_in(call: dict[str, Any]) -> str | None:
    extra = call.get("extra_content")
    google = extra.get("google") if isinstance(extra, dict) else None
    sig = google.get("thought_signature") if isinstance(google, dict) else None
    return sig if isinstance(sig, str) and sig else None
