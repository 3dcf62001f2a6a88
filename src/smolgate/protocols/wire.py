"""Shared pieces of the typed upstream stream decoders: how one SSE `data:` payload becomes a wire struct.

Each protocol's `*_wire` module declares its stream events as a msgspec tagged union (`tag_field="type"`),
so the hot path is one typed decode with no `dict.get` chains. Anything the union does not accept — an
event type we do not model, a known type with a field of the wrong shape, a payload with no `type` — takes
the slow path in `decode`, which says which of those it was so each decoder keeps today's answer.
"""

from __future__ import annotations

from typing import Generic, TypeVar

import msgspec

T = TypeVar("T")


class Wire(msgspec.Struct, tag_field="type", kw_only=True):
    """Base of a wire event: unknown fields are ignored, optional ones have defaults."""


class Unknown(msgspec.Struct, frozen=True):
    """A JSON object whose `type` (or SSE event name, `kind`) the union does not accept."""

    kind: str | None
    known: bool  # the type is one we model but a field had the wrong shape


class Invalid(msgspec.Struct, frozen=True):
    """Not JSON, or JSON that is not an object."""

    json: bool  # it was valid JSON (an array, a string, …)


class _Head(msgspec.Struct):
    type: object = None


_HEAD = msgspec.json.Decoder(_Head)


class EventDecoder(Generic[T]):
    """One protocol's `data:` payloads → its typed event union, with the fallbacks spelled out."""

    __slots__ = ("_known", "_union", "_union_type")

    def __init__(self, union: object, known: frozenset[str]) -> None:
        self._union: msgspec.json.Decoder[T] = msgspec.json.Decoder(union)
        self._union_type = union
        self._known = known

    def decode(self, data: str, event: str | None = None) -> T | Unknown | Invalid:
        """`event` (the SSE `event:` line) names the type when the payload carries none."""
        try:
            return self._union.decode(data)
        except msgspec.ValidationError:
            pass
        except msgspec.DecodeError:
            return Invalid(json=False)
        try:
            head = _HEAD.decode(data)
        except msgspec.ValidationError:
            return Invalid(json=True)
        kind = head.type if isinstance(head.type, str) else None
        if not head.type and event is not None and event in self._known:
            return self._with_type(data, event)
        return Unknown(kind=kind, known=kind in self._known)

    def _with_type(self, data: str, event: str) -> T | Unknown:
        obj = msgspec.json.decode(data)
        obj["type"] = event
        try:
            out: T = msgspec.convert(obj, self._union_type)
        except msgspec.ValidationError:
            return Unknown(kind=event, known=True)
        return out
