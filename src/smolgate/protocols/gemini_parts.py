"""Gemini wire helpers shared by the codec's client and upstream sides: key casing, parts ↔ blocks,
OpenAPI-subset schemas, usage, finish reasons and error status names.

The Gemini API is proto-JSON: every key may arrive camelCase or snake_case (google-genai 3.4 sends
`inlineData:{"mime_type":…}`), so reads go through `get()`, which tries both spellings. Values that are
user data (function args, responses, schema property names) are never re-keyed.
"""

from __future__ import annotations

from typing import Any

import orjson

from ..canonical import Block, Image, Reasoning, StopReason, Text, ToolCall, ToolResult, Usage, Video
from ..errors import ErrorKind, invalid
from .common import b64, check, check_http_url, decode_b64, loads_json, new_id, sniff_image_type

# Gemini thoughtSignatures ride on canonical `Reasoning.signature` with this prefix so the codec can tell
# its own signatures from foreign ones (Anthropic thinking signatures) and drop the foreign ones.
SIG_PREFIX = "gemini:"

_SNAKE: dict[str, str] = {}
_ID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")


def snake(key: str) -> str:
    s = _SNAKE.get(key)
    if s is None:
        s = _SNAKE[key] = "".join("_" + c.lower() if c.isupper() else c for c in key)
    return s


def camel(key: str) -> str:
    if "_" not in key:
        return key
    head, *rest = key.split("_")
    return head + "".join(p[:1].upper() + p[1:] for p in rest)


def get(obj: dict[str, Any], key: str) -> Any:
    """`obj[key]` under its camelCase or snake_case spelling."""
    v = obj.get(key)
    return obj.get(snake(key)) if v is None else v


def fld(obj: dict[str, Any], key: str, typ: Any, path: str, *, required: bool = False) -> Any:
    name = f"{path}.{key}" if path else key
    v = get(obj, key)
    if v is None:
        if required:
            raise invalid(f"missing required field '{name}'", param=name)
        return None
    return check(v, typ, name)


def safe_id(text: str) -> str:
    return "".join(c if c in _ID_CHARS else "_" for c in text)


# ---------------------------------------------------------------- schemas

_INT_KEYS = frozenset(("minItems", "maxItems", "minLength", "maxLength", "minProperties", "maxProperties"))


def to_json_schema(s: Any) -> Any:
    """Gemini's OpenAPI-subset `Schema` (upper-case types, `nullable`) → JSON Schema."""
    if not isinstance(s, dict):
        return s
    out: dict[str, Any] = {}
    nullable = False
    for k, v in s.items():
        k = camel(k)
        if k == "type":
            if isinstance(v, str) and v.upper() != "TYPE_UNSPECIFIED":
                out["type"] = v.lower()
        elif k == "nullable":
            nullable = v is True
        elif k == "properties" and isinstance(v, dict):
            out[k] = {name: to_json_schema(sub) for name, sub in v.items()}
        elif k in ("items", "additionalProperties"):
            out[k] = to_json_schema(v)
        elif k == "anyOf" and isinstance(v, list):
            out[k] = [to_json_schema(x) for x in v]
        elif k == "propertyOrdering":
            continue
        elif k in _INT_KEYS and isinstance(v, str) and v.isdigit():
            out[k] = int(v)  # proto-JSON int64 arrives as a string
        else:
            out[k] = v
    if nullable and isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
    return out


# ---------------------------------------------------------------- parts → blocks


def media_kind(mime: str | None, uri: str = "") -> str:
    if mime:
        return "video" if mime.startswith("video/") else "image" if mime.startswith("image/") else "other"
    low = uri.lower().split("?")[0]
    if low.endswith((".mp4", ".webm", ".mov", ".mkv", ".avi")) or "youtube.com/" in low or "youtu.be/" in low:
        return "video"
    return "image"


def result_text(response: Any) -> tuple[str, bool]:
    """functionResponse.response → (text, is_error). `{"output": s}` / `{"error": s}` unwrap to `s`."""
    if isinstance(response, dict) and len(response) == 1:
        ((k, v),) = response.items()
        if isinstance(v, str) and k in ("output", "result", "error"):
            return v, k == "error"
    return orjson.dumps(response).decode(), False


def result_response(res: ToolResult) -> tuple[dict[str, Any], list[Image]]:
    """Canonical tool result → functionResponse.response (JSON object text kept as the object)."""
    text = "".join(b.text for b in res.content if isinstance(b, Text))
    images = [b for b in res.content if isinstance(b, Image)]
    if res.is_error:
        return {"error": text}, images
    if text.startswith("{"):
        try:
            obj = loads_json(text)  # too deep counts as not JSON
        except orjson.JSONDecodeError:
            obj = None
        if isinstance(obj, dict):
            return obj, images
    return {"output": text}, images


def args_object(arguments: str) -> Any:
    if not arguments.strip():
        return {}
    try:
        obj = loads_json(arguments)
    except orjson.JSONDecodeError:
        return {"_raw": arguments}
    return obj if isinstance(obj, dict) else {"_value": obj}


class PartReader:
    """Gemini parts → canonical blocks for one conversation (keeps the call-id ↔ name bookkeeping).

    Function calls without an id get a stable one (`call_<name>_<turn>_<n>`) so decoding the same history
    twice yields the same ids; function responses without an id are matched to the latest model turn's
    calls by name, in order.
    """

    def __init__(self, stable_ids: bool = True) -> None:
        self.stable_ids = stable_ids
        self.pending: dict[str, list[str]] = {}

    def start_model_turn(self) -> None:
        self.pending = {}

    def read(self, part: Any, path: str, turn: int, role: str, n_calls: int) -> list[Block]:
        check(part, dict, path)
        sig = fld(part, "thoughtSignature", str, path)
        text = fld(part, "text", str, path)
        if text is not None:
            if get(part, "thought") is True:
                return [Reasoning(text=text, signature=SIG_PREFIX + sig if sig else None)]
            out: list[Block] = [Text(text=text)] if text else []
            if sig:
                out.append(Reasoning(signature=SIG_PREFIX + sig))
            return out
        fc = fld(part, "functionCall", dict, path)
        if fc is not None:
            p = f"{path}.functionCall"
            if role != "assistant":
                raise invalid(f"'{p}' is only allowed in 'model' turns", param=p)
            name = fld(fc, "name", str, p, required=True)
            args = fld(fc, "args", dict, p)
            cid = fld(fc, "id", str, p) or (
                f"call_{safe_id(name)}_{turn}_{n_calls}" if self.stable_ids else new_id("call_")
            )
            self.pending.setdefault(name, []).append(cid)
            return [ToolCall(id=cid, name=name, arguments=orjson.dumps(args or {}).decode(), signature=sig)]
        fr = fld(part, "functionResponse", dict, path)
        if fr is not None:
            p = f"{path}.functionResponse"
            if role != "user":
                raise invalid(f"'{p}' is only allowed in 'user' turns", param=p)
            name = fld(fr, "name", str, p, required=True)
            response = fld(fr, "response", dict, p) or {}
            queue = self.pending.get(name) or []
            cid = fld(fr, "id", str, p)
            if cid is None:
                cid = queue.pop(0) if queue else f"call_{safe_id(name)}_{turn}_{n_calls}"
            elif cid in queue:
                queue.remove(cid)
            text, is_error = result_text(response)
            return [ToolResult(call_id=cid, name=name, content=[Text(text=text)], is_error=is_error)]
        inline = fld(part, "inlineData", dict, path)
        if inline is not None:
            p = f"{path}.inlineData"
            mime = fld(inline, "mimeType", str, p, required=True)
            data = decode_b64(fld(inline, "data", str, p, required=True), f"{p}.data")
            kind = media_kind(mime)
            if kind == "other":
                raise invalid(
                    f"'{p}.mimeType' {mime!r} is not supported (images and video only)", param=f"{p}.mimeType"
                )
            return [
                Video(data=data, media_type=mime) if kind == "video" else Image(data=data, media_type=mime)
            ]
        fd = fld(part, "fileData", dict, path)
        if fd is not None:
            p = f"{path}.fileData"
            uri = fld(fd, "fileUri", str, p, required=True)
            if (
                uri[:8].lower().startswith(("http://", "https://"))
            ):  # gs:// and File API names pass as they are
                check_http_url(uri, f"{p}.fileUri")
            mime = fld(fd, "mimeType", str, p)
            kind = media_kind(mime, uri)
            if kind == "other":
                raise invalid(
                    f"'{p}.mimeType' {mime!r} is not supported (images and video only)", param=f"{p}.mimeType"
                )
            return [Video(url=uri, media_type=mime) if kind == "video" else Image(url=uri, media_type=mime)]
        if sig:  # a bare signature part
            return [Reasoning(signature=SIG_PREFIX + sig)]
        return []  # executableCode, codeExecutionResult, videoMetadata…: not representable


# ---------------------------------------------------------------- blocks → parts


def gemini_sig(sig: str | None) -> str | None:
    """The raw thoughtSignature when `sig` is one of ours, else None (foreign signatures are dropped)."""
    if sig and sig.startswith(SIG_PREFIX):
        return sig[len(SIG_PREFIX) :]
    return None


def blocks_to_parts(blocks: list[Block], upstream: bool, thoughts: bool = True) -> list[dict[str, Any]]:
    """Canonical blocks → Gemini parts. An empty signed `Reasoning` folds into the preceding text part.

    `upstream` drops unsigned/foreign reasoning (Gemini ignores it and it is not Gemini's); toward a client
    reasoning text is shown as `thought: true` parts when `thoughts` (the client's includeThoughts), while
    its signatures are always kept.
    """
    parts: list[dict[str, Any]] = []
    for b in blocks:
        if isinstance(b, Text):
            if b.text:
                parts.append({"text": b.text})
        elif isinstance(b, Reasoning):
            sig = gemini_sig(b.signature)
            if not b.text or not thoughts:
                if sig is None:
                    continue
                prev = parts[-1] if parts else None
                if (
                    prev is not None
                    and "text" in prev
                    and "thoughtSignature" not in prev
                    and not prev.get("thought")
                ):
                    prev["thoughtSignature"] = sig
                else:
                    parts.append({"text": "", "thoughtSignature": sig})
                continue
            if upstream and sig is None:
                continue
            part: dict[str, Any] = {"text": b.text, "thought": True}
            if sig:
                part["thoughtSignature"] = sig
            parts.append(part)
        elif isinstance(b, ToolCall):
            part = {"functionCall": {"id": b.id, "name": b.name, "args": args_object(b.arguments)}}
            if b.signature:
                part["thoughtSignature"] = b.signature
            parts.append(part)
        elif isinstance(b, (Image, Video)):
            parts.append(media_part(b))
    return parts


def media_part(b: Image | Video) -> dict[str, Any]:
    if b.data is not None:
        mime = b.media_type or ("video/mp4" if isinstance(b, Video) else sniff_image_type(b.data))
        return {"inlineData": {"mimeType": mime, "data": b64(b.data)}}
    fd: dict[str, Any] = {"fileUri": b.url or ""}
    if b.media_type:
        fd["mimeType"] = b.media_type
    return {"fileData": fd}


# ---------------------------------------------------------------- usage, finish reasons, errors

FINISH_OUT = {
    StopReason.END_TURN: "STOP",
    StopReason.STOP_SEQUENCE: "STOP",
    StopReason.TOOL_USE: "STOP",
    StopReason.MAX_TOKENS: "MAX_TOKENS",
    StopReason.CONTENT_FILTER: "SAFETY",
}
_FILTERED = frozenset(
    (
        "SAFETY",
        "RECITATION",
        "LANGUAGE",
        "OTHER",
        "BLOCKLIST",
        "PROHIBITED_CONTENT",
        "SPII",
        "IMAGE_SAFETY",
        "IMAGE_PROHIBITED_CONTENT",
        "IMAGE_OTHER",
        "NO_IMAGE",
        "IMAGE_RECITATION",
        "ESCALATION",
    )
)


def finish_in(reason: str, has_tool_call: bool) -> StopReason:
    if reason in ("MAX_TOKENS", "CONTINUATION"):
        return StopReason.MAX_TOKENS
    if reason in _FILTERED:
        return StopReason.CONTENT_FILTER
    return StopReason.TOOL_USE if has_tool_call else StopReason.END_TURN


def usage_out(u: Usage) -> dict[str, int]:
    out = {
        "promptTokenCount": u.input_tokens,
        "candidatesTokenCount": u.output_tokens - u.reasoning_tokens,
        "totalTokenCount": u.input_tokens + u.output_tokens,
    }
    if u.reasoning_tokens:
        out["thoughtsTokenCount"] = u.reasoning_tokens
    if u.cached_tokens:
        out["cachedContentTokenCount"] = u.cached_tokens
    return out


def _int(v: Any) -> int:
    return v if isinstance(v, int) and not isinstance(v, bool) else 0


def usage_in(m: Any) -> Usage:
    if not isinstance(m, dict):
        return Usage()
    return count_usage(
        prompt=_int(get(m, "promptTokenCount")) + _int(get(m, "toolUsePromptTokenCount")),
        candidates=_int(get(m, "candidatesTokenCount")),
        thoughts=_int(get(m, "thoughtsTokenCount")),
        total=_int(get(m, "totalTokenCount")),
        cached=_int(get(m, "cachedContentTokenCount")),
    )


def count_usage(*, prompt: int, candidates: int, thoughts: int, total: int, cached: int) -> Usage:
    """usageMetadata counts → canonical usage (`prompt` includes tool-use prompt tokens)."""
    # candidatesTokenCount normally excludes thoughts; some deployments include them (sum equals total).
    out = candidates if thoughts and prompt + candidates == total else candidates + thoughts
    return Usage(input_tokens=prompt, output_tokens=out, cached_tokens=cached, reasoning_tokens=thoughts)


STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ABORTED",
    413: "INVALID_ARGUMENT",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "UNIMPLEMENTED",
    502: "UNAVAILABLE",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
KIND_NAMES = {
    ErrorKind.AUTH: "UNAUTHENTICATED",
    ErrorKind.PERMISSION: "PERMISSION_DENIED",
    ErrorKind.RATE_LIMITED: "RESOURCE_EXHAUSTED",
    ErrorKind.QUOTA: "RESOURCE_EXHAUSTED",  # Gemini's quota-exceeded answer (429)
    ErrorKind.TIMEOUT: "DEADLINE_EXCEEDED",
}


def status_name(status: int) -> str:
    return STATUS_NAMES.get(status) or ("INTERNAL" if status >= 500 else "FAILED_PRECONDITION")
