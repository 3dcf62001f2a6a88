"""JSON Schema -> a small tree of `Node`s that the constrained-decoding automaton walks.

Supported subset: type (one or a list), object (properties, required, additionalProperties bool | schema),
array (items, minItems, maxItems), string (minLength, maxLength), number, integer, boolean, null, enum / const
of any value, anyOf / oneOf (oneOf is generated like anyOf), single-element allOf, and non-recursive local
`$ref`s (`#/$defs/...`, `#/definitions/...`, as pydantic emits them). Keywords that would restrict values
further (pattern, minimum, format, ...) are not enforced; `compile_schema` reports them in `unenforced`.

Generation choices that are stricter than JSON Schema (the output still validates):
- an object with `properties` and no `additionalProperties` gets no extra keys (the schema default would
  allow any, which only gives a small model room to wander);
- enum / const values are written in compact JSON (`{"a":1}`), strings with literal non-ASCII characters.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

ALL_TYPES = frozenset({"object", "array", "string", "number", "integer", "boolean", "null"})
_ANNOTATIONS = frozenset(
    {
        "title",
        "description",
        "default",
        "examples",
        "$schema",
        "$id",
        "$comment",
        "$defs",
        "definitions",
        "deprecated",
        "readOnly",
        "writeOnly",
        "nullable",
        "discriminator",
        "strict",
        "name",
    }
)
_HANDLED = frozenset(
    {
        "type",
        "properties",
        "required",
        "additionalProperties",
        "items",
        "minItems",
        "maxItems",
        "minLength",
        "maxLength",
        "enum",
        "const",
        "anyOf",
        "oneOf",
        "allOf",
        "$ref",
    }
)
_LITERAL_MIN = {"null": 4, "boolean": 4, "number": 1, "integer": 1}
# Subschemas nested in one another, counting each `$ref` followed: a chain of refs adds depth without adding
# JSON nesting, and compiling (and later walking) recurses once per level.
MAX_DEPTH = 64


@dataclass(eq=False, slots=True)
class Node:
    """One schema position. Hashed by identity, so automaton frames holding nodes stay cheap to compare."""

    types: frozenset[str] = ALL_TYPES
    literals: tuple[bytes, ...] | None = None  # enum/const: the only allowed JSON texts
    any_of: tuple[Node, ...] = ()
    props: dict[bytes, Node] = field(default_factory=dict)  # JSON-escaped key (no quotes) -> value node
    required: frozenset[bytes] = frozenset()
    extra: Node | None = None  # schema of additional properties; None = none allowed
    items: Node | None = None
    min_items: int = 0
    max_items: int | None = None
    min_length: int = 0
    max_length: int | None = None
    min_len: int = 1  # length of the shortest JSON text this node accepts
    member_cost: dict[bytes, int] = field(default_factory=dict)  # len('"key":') + value.min_len
    key_prefixes: frozenset[bytes] = frozenset()


def _any() -> Node:
    node = Node(min_len=1)  # "0"
    node.extra = node.items = node  # any object / array holds any values: a cycle, so built by hand
    return node


ANY = _any()


def encode_key(key: str) -> bytes:
    return json.dumps(key, ensure_ascii=False)[1:-1].encode()


def literal_text(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


def _type_ok(value: Any, types: frozenset[str]) -> bool:
    if value is None:
        return "null" in types
    if isinstance(value, bool):
        return "boolean" in types
    if isinstance(value, int):
        return bool(types & {"integer", "number"})
    if isinstance(value, float):
        return "number" in types or ("integer" in types and value.is_integer())
    if isinstance(value, str):
        return "string" in types
    return ("array" if isinstance(value, list) else "object") in types


class _Compiler:
    def __init__(self, root: Mapping[str, Any]) -> None:
        self.root = root
        self.refs: dict[str, Node] = {}
        self.active: set[str] = set()
        self.unenforced: set[str] = set()
        self.depth = 0

    def ref(self, ref: str) -> Node:
        if ref in self.refs:
            return self.refs[ref]
        if not ref.startswith("#/") and ref != "#":
            raise ValueError(f"only local $ref is supported, not {ref!r}")
        if ref in self.active:
            raise ValueError(f"recursive $ref {ref!r} is not supported")
        target: Any = self.root
        for part in ref[2:].split("/") if ref != "#" else []:
            part = part.replace("~1", "/").replace("~0", "~")
            if not isinstance(target, Mapping) or part not in target:
                raise ValueError(f"$ref {ref!r} does not resolve")
            target = target[part]
        self.active.add(ref)
        node = self.refs[ref] = self.compile(target)
        self.active.discard(ref)
        return node

    def compile(self, schema: Any) -> Node:
        if schema is True or schema == {}:
            return ANY
        if self.depth >= MAX_DEPTH:
            raise ValueError(f"the schema nests deeper than {MAX_DEPTH} levels (counting $refs)")
        self.depth += 1
        try:
            return self._compile(schema)
        finally:
            self.depth -= 1

    def _compile(self, schema: Any) -> Node:
        if not isinstance(schema, Mapping):
            # a ValueError, not a TypeError: the caller turns it into the client's 400
            raise ValueError(f"a schema must be an object or true, not {schema!r}")
        self.unenforced |= set(schema) - _HANDLED - _ANNOTATIONS
        if "$ref" in schema:
            return self.ref(schema["$ref"])
        if "allOf" in schema:
            if len(schema["allOf"]) != 1:
                raise ValueError("allOf is supported with a single subschema only")
            return self.compile(schema["allOf"][0])
        alts = schema.get("anyOf", schema.get("oneOf"))
        if alts is not None:
            branches = tuple(self.compile(s) for s in alts)
            if not branches:
                raise ValueError("anyOf/oneOf needs at least one subschema")
            return Node(any_of=branches, min_len=min(b.min_len for b in branches))
        return self.typed(schema)

    def typed(self, schema: Mapping[str, Any]) -> Node:
        raw_type = schema.get("type")
        if raw_type is None:
            types = _infer_types(schema)
        else:
            types = frozenset([raw_type] if isinstance(raw_type, str) else raw_type)
            if not types <= ALL_TYPES or not types:
                raise ValueError(f"unsupported type {raw_type!r}")
        node = Node(types=types)
        if "const" in schema or "enum" in schema:
            values = [schema["const"]] if "const" in schema else list(schema["enum"])
            texts = tuple(dict.fromkeys(literal_text(v) for v in values if _type_ok(v, types)))
            if not texts:
                raise ValueError("enum/const has no value of the allowed type")
            node.literals, node.min_len = texts, min(len(t) for t in texts)
            return node
        node.min_length, node.max_length = int(schema.get("minLength", 0)), schema.get("maxLength")
        node.min_items, node.max_items = int(schema.get("minItems", 0)), schema.get("maxItems")
        if node.max_items is not None and node.max_items < node.min_items:
            raise ValueError("maxItems < minItems")
        if node.max_length is not None and node.max_length < node.min_length:
            raise ValueError("maxLength < minLength")
        if "array" in types:
            node.items = self.compile(schema.get("items", True))
        if "object" in types:
            self.object(node, schema)
        node.min_len = min(self.type_min(node, t) for t in types)
        return node

    def object(self, node: Node, schema: Mapping[str, Any]) -> None:
        props = schema.get("properties", {})
        node.props = {encode_key(k): self.compile(v) for k, v in props.items()}
        extra = schema.get("additionalProperties", not props)
        node.extra = None if extra is False else self.compile(extra)
        required = [encode_key(k) for k in schema.get("required", [])]
        for key in required:
            if key not in node.props:
                if node.extra is None:
                    raise ValueError(f"required property {key.decode()!r} is not allowed by the schema")
                node.props[key] = node.extra
        node.required = frozenset(required)
        node.member_cost = {k: len(k) + 3 + v.min_len for k, v in node.props.items()}
        node.key_prefixes = frozenset(k[:i] for k in node.props for i in range(len(k) + 1))

    @staticmethod
    def type_min(node: Node, t: str) -> int:
        if t in _LITERAL_MIN:
            return _LITERAL_MIN[t]
        if t == "string":
            return 2 + node.min_length
        if t == "array":
            n = node.min_items
            return 2 + (n * (node.items.min_len + 1) - 1 if n and node.items else 0)
        costs = [node.member_cost[k] for k in node.required]
        return 2 + sum(costs) + max(len(costs) - 1, 0)


def _infer_types(schema: Mapping[str, Any]) -> frozenset[str]:
    if {"properties", "required", "additionalProperties"} & schema.keys():
        return frozenset({"object"})
    if {"items", "minItems", "maxItems"} & schema.keys():
        return frozenset({"array"})
    if {"minLength", "maxLength"} & schema.keys():
        return frozenset({"string"})
    return ALL_TYPES


@dataclass(frozen=True, slots=True)
class CompiledSchema:
    root: Node
    unenforced: frozenset[str]  # keywords present in the schema that generation does not enforce


def compile_schema(schema: Mapping[str, Any] | bool | None) -> CompiledSchema:
    """None -> JSON-object mode (any object); True / {} -> any JSON value; else the schema's subset above."""
    if schema is None:
        return CompiledSchema(Node(types=frozenset({"object"}), extra=ANY, min_len=2), frozenset())
    compiler = _Compiler(schema if isinstance(schema, Mapping) else {})
    return CompiledSchema(compiler.compile(schema), frozenset(compiler.unenforced))
