"""Gemini `streamGenerateContent` chunks (`GenerateContentResponse`) as typed wire structs, in the order
of the API reference, with the camelCase names the API sends.

Gemini is proto-JSON, so any key may also arrive snake_case. `decode` takes one typed decode unless the
payload has a key with an underscore (a cheap scan); only then does it re-key the payload to camelCase
(never function `args`, which are user data) and decode that. A field of the wrong shape reads as absent
and a list element that is not an object as an empty one (the first candidate stays the first), so one
bad field costs only itself, as it did for the dict-walking reader this replaces.
"""

from __future__ import annotations

import re
import types
import typing
from typing import TypeVar

import msgspec

from .gemini_parts import camel
from .wire import Invalid

S = TypeVar("S", bound=msgspec.Struct)


class _Camel(msgspec.Struct, rename="camel"):
    """Unknown fields are ignored and every field has a default, so newer API versions still decode."""


class FunctionCall(_Camel):
    id: str | None = None
    name: str | None = None
    # user data, re-serialised as the tool call's arguments: kept as sent (an object, or whatever came)
    args: msgspec.Raw = msgspec.field(default_factory=lambda: msgspec.Raw(b"null"))


class Part(_Camel):
    thought: bool | None = None
    thought_signature: str | None = None
    text: str | None = None
    function_call: FunctionCall | None = None


class Content(_Camel):
    parts: list[Part] | None = None


class Candidate(_Camel):
    content: Content | None = None
    finish_reason: str | None = None


class PromptFeedback(_Camel):
    block_reason: str | None = None


class UsageMetadata(_Camel):
    prompt_token_count: int | None = None
    cached_content_token_count: int | None = None
    candidates_token_count: int | None = None
    tool_use_prompt_token_count: int | None = None
    thoughts_token_count: int | None = None
    total_token_count: int | None = None


class Status(_Camel):
    code: int | None = None
    message: str | None = None
    status: str | None = None


class Chunk(_Camel):
    candidates: list[Candidate] | None = None
    prompt_feedback: PromptFeedback | None = None
    usage_metadata: UsageMetadata | None = None
    model_version: str | None = None
    response_id: str | None = None
    # not part of GenerateContentResponse: a stream that fails midway sends `{"error": Status}` instead
    error: Status | str | None = None


_CHUNK = msgspec.json.Decoder(Chunk)
# The tail of a snake_case key: a `"` inside a string value is escaped, and a value is never followed by `:`.
_SNAKE_KEY = re.compile(r'_[a-z0-9_]*"\s*:')


def decode(data: str) -> Chunk | Invalid:
    """One `data:` payload → a `Chunk`, or `Invalid` when it is not JSON (or not a JSON object)."""
    if "_" not in data or _SNAKE_KEY.search(data) is None:
        try:
            return _CHUNK.decode(data)
        except msgspec.ValidationError:
            pass
        except msgspec.DecodeError:
            return Invalid(json=False)
    try:
        obj = msgspec.json.decode(data)
    except msgspec.DecodeError:  # also a number out of range, which is not JSON a reader could use
        return Invalid(json=False)
    if not isinstance(obj, dict):
        return Invalid(json=True)
    obj = _camel_keys(obj)
    try:
        return _CHUNK.decode(msgspec.json.encode(obj))
    except msgspec.ValidationError:
        return _struct(obj, Chunk)


def _camel_keys(obj: dict[str, object]) -> dict[str, object]:
    """Every key camelCase; the camelCase spelling wins over the snake_case one unless it is null."""
    out: dict[str, object] = {}
    for key, value in obj.items():
        name = camel(key)
        if name != "args":
            value = _camel_value(value)
        if name == key:
            if value is not None or name not in out:
                out[name] = value
        elif out.get(name) is None:
            out[name] = value
    return out


def _camel_value(value: object) -> object:
    if isinstance(value, dict):
        return _camel_keys(value)
    if isinstance(value, list):
        return [_camel_value(v) for v in value]
    return value


# ---------------------------------------------------------------- salvage: a payload the types reject

_ABSENT = object()


def _struct(obj: dict[str, object], cls: type[S]) -> S:
    """`cls` from `obj`, keeping each field that fits its type and defaulting the rest."""
    fields: dict[str, object] = {}
    for f in msgspec.structs.fields(cls):
        if f.encode_name in obj:
            value = _convert(obj[f.encode_name], f.type)
            if value is not _ABSENT:
                fields[f.name] = value
    return cls(**fields)


def _convert(value: object, tp: object) -> object:
    if tp is msgspec.Raw:
        return msgspec.Raw(msgspec.json.encode(value))
    try:
        return msgspec.convert(value, tp)
    except msgspec.ValidationError:
        pass
    union = typing.get_origin(tp) in (typing.Union, types.UnionType)
    for arm in typing.get_args(tp) if union else (tp,):
        if isinstance(arm, type) and issubclass(arm, msgspec.Struct) and isinstance(value, dict):
            return _struct(value, arm)
        if typing.get_origin(arm) is list and isinstance(value, list):
            (item,) = typing.get_args(arm)  # every list here holds objects
            return [_element(x, item) for x in value]
    return _ABSENT


def _element(value: object, cls: type[S]) -> S:
    """A list element keeps its place: one that is not an object reads as an empty one."""
    return _struct(value, cls) if isinstance(value, dict) else cls()
