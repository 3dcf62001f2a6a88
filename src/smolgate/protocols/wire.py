"""Shared pieces of the typed upstream stream decoders: how one SSE `data:` payload becomes a wire struct.

Each protocol's `*_wire` module declares its stream events as a msgspec tagged union (`tag_field="type"`),
so the hot path is one typed decode with no `dict.get` chains. Anything the union does not accept takes
the slow path in `decode`: an event type we do not model is `Unknown` (decoders skip it), a known type with
a field of the wrong shape is that event with every field at its default (as a defensive reader would
have seen it), a payload with no `type` takes the SSE `event:` name, and non-objects are `Invalid`.
"""

from __future__ import annotations

from typing import Generic, TypeVar

import msgspec

T = TypeVar("T")


class Wire(msgspec.Struct, tag_field="type", kw_only=True):
    """Base of a wire event: unknown fields are ignored, optional ones have defaults."""


class Unknown(msgspec.Struct, frozen=True):
    """A JSON object whose `type` the union does not model (`kind` None when it has no string type)."""

    kind: str | None


class Invalid(msgspec.Struct, frozen=True):
    """Not JSON, or JSON that is not an object."""

    json: bool  # it was valid JSON (an array, a string, …)


class _Head(msgspec.Struct):
    type: object = None


_HEAD = msgspec.json.Decoder(_Head)


class EventDecoder(Generic[T]):
    """One protocol's `data:` payloads → its typed event union, with the fallbacks spelled out."""

    __slots__ = ("_bare", "_union", "_union_type")

    def __init__(self, union: object, known: tuple[str, ...]) -> None:
        self._union: msgspec.json.Decoder[T] = msgspec.json.Decoder(union)
        self._union_type = union
        # a known event whose fields have the wrong shape reads as the bare event: every field its default
        self._bare: dict[str, T] = {k: msgspec.convert({"type": k}, union) for k in known}

    def decode(self, data: str | bytes | msgspec.Raw, event: str | None = None) -> T | Unknown | Invalid:
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
        if not head.type and event is not None and event in self._bare:
            return self._with_type(data, event)
        kind = head.type if isinstance(head.type, str) else None
        bare = self._bare.get(kind) if kind is not None else None
        return bare if bare is not None else Unknown(kind=kind)

    def _with_type(self, data: str | bytes | msgspec.Raw, event: str) -> T:
        obj = msgspec.json.decode(data)
        obj["type"] = event
        try:
            out: T = msgspec.convert(obj, self._union_type)
        except msgspec.ValidationError:
            return self._bare[event]
        return out
