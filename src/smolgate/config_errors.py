"""Config validation errors a person can act on: the line of the offending key, the valid names or values, and
the nearest one to what was written (`difflib`).

msgspec reports a path (`$.providers[0]`) and a problem; this module follows the path through both the YAML
node tree (for the line) and the config's types (for what would have been valid). It knows nothing about the
gateway: only structs, lists, dicts, optionals, literals and tagged unions.
"""

from __future__ import annotations

import difflib
import re
import types
import typing
from collections.abc import Sequence

import msgspec
import yaml

_PATH_PART = re.compile(r"\.([^.\[]+)|\[(\d+)\]")
_AT = " - at `"
_UNKNOWN = re.compile(r"Object contains unknown field `(.*)`")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,40}")  # a field name worth echoing (not a pasted credential)


def explain(message: str, node: yaml.Node | None, data: object, source: str, root: type) -> str:
    """`source:line: path: problem; hint` for a msgspec ValidationError message about `data` (parsed from
    `node`) converted to `root`."""
    problem, _, at = message.partition(_AT)
    path = at.rstrip("`") or "$"
    parts = _parts(path)
    hint = ""
    if m := _UNKNOWN.fullmatch(problem):
        name = m.group(1)
        if _NAME.fullmatch(name):
            parts.append(name)
            problem, hint = f"unknown field `{name}`", _unknown_field_hint(name, root, parts[:-1], data)
        else:  # it could be a key pasted in the wrong place: do not echo it
            problem = "unknown field (name not shown)"
    else:  # a wrong value or type: list the valid values where the field has a fixed set
        hint = _value_hint(root, parts, data)
    line = _line(node, parts)
    where = f"{source}:{line}" if line else source
    shown = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in parts).removeprefix(".") or "(top)"
    return f"{where}: {shown}: {problem}{hint}"


def _parts(path: str) -> list[str | int]:
    return [key if key else int(index) for key, index in _PATH_PART.findall(path)]


def _line(node: yaml.Node | None, parts: Sequence[str | int]) -> int | None:
    """The 1-based line of the node at `parts`; the last step, when it is a key, gives the key's own line."""
    line = node.start_mark.line + 1 if node is not None else None
    for part in parts:
        if isinstance(node, yaml.MappingNode) and isinstance(part, str):
            pair = next(((k, v) for k, v in node.value if getattr(k, "value", None) == part), None)
            if pair is None:
                return line
            line, node = pair[0].start_mark.line + 1, pair[1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            return line
    return line


def _unwrap(tp: object) -> list[object]:
    """The alternatives of an optional/union type (`X | None` → [X])."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return [a for a in typing.get_args(tp) if a is not type(None)]
    return [tp]


def _struct_for(tp: object, item: object) -> type[msgspec.Struct] | None:
    """The struct `item` converts to under `tp` (a tagged union: the member whose tag `item` carries)."""
    structs = [t for t in _unwrap(tp) if isinstance(t, type) and issubclass(t, msgspec.Struct)]
    if len(structs) <= 1:
        return structs[0] if structs else None
    for s in structs:
        cfg = s.__struct_config__
        if isinstance(item, dict) and cfg.tag_field and item.get(cfg.tag_field) == cfg.tag:
            return s
    return None


def _type_at(root: type, parts: Sequence[str | int], data: object) -> object:
    """Follow `parts` through the types from `root` (and through `data`, to pick tagged-union members)."""
    tp: object = root
    for part in parts:
        struct = _struct_for(tp, data)
        if isinstance(part, str):
            if struct is None:  # a dict's value
                args = typing.get_args(next(iter(_unwrap(tp))))
                tp = args[1] if len(args) == 2 else object
            else:
                tp = typing.get_type_hints(struct).get(part, object)
            data = data.get(part) if isinstance(data, dict) else None
        else:
            args = typing.get_args(next(iter(_unwrap(tp))))
            tp = args[0] if args else object
            data = data[part] if isinstance(data, list) and part < len(data) else None
    return tp


def _item_at(data: object, parts: Sequence[str | int]) -> object:
    for part in parts:
        if isinstance(part, str):
            data = data.get(part) if isinstance(data, dict) else None
        else:
            data = data[part] if isinstance(data, list) and part < len(data) else None
    return data


def _nearest(word: str, names: Sequence[str]) -> str:
    close = difflib.get_close_matches(word, names, n=1, cutoff=0.6)
    return f"; did you mean `{close[0]}`?" if close else ""


def _unknown_field_hint(name: str, root: type, parent: list[str | int], data: object) -> str:
    tp = _type_at(root, parent, data)
    item = _item_at(data, parent)
    struct = _struct_for(tp, item)
    if struct is None:
        return ""
    fields = [f for f in struct.__struct_fields__ if f != struct.__struct_config__.tag_field]
    hint = ""
    others = [
        s
        for s in _unwrap(tp)
        if isinstance(s, type) and s is not struct and name in getattr(s, "__struct_fields__", ())
    ]
    if others and isinstance(item, dict):  # a field of the union's other kind: say which one
        theirs = sorted({p for s in others for p in _literals(typing.get_type_hints(s).get("protocol"))})
        hint = (
            f" for protocol `{item.get('protocol')}` (it applies to protocol: {', '.join(theirs)})"
            if theirs
            else ""
        )
    return f"{hint}{_nearest(name, fields)}; valid fields: {', '.join(sorted(fields))}"


def _literals(tp: object) -> list[str]:
    out: list[str] = []
    for alt in _unwrap(tp):
        if typing.get_origin(alt) is typing.Literal:
            out += [str(a) for a in typing.get_args(alt)]
    return out


def _value_hint(root: type, parts: list[str | int], data: object) -> str:
    """Valid values of a literal field; under a tagged union, of every member (`protocol` lists them all)."""
    if not parts or not isinstance(parts[-1], str):
        return ""
    parent = _type_at(root, parts[:-1], data)
    members = [s for s in _unwrap(parent) if isinstance(s, type) and issubclass(s, msgspec.Struct)]
    valid = list(
        dict.fromkeys(v for s in members for v in _literals(typing.get_type_hints(s).get(parts[-1])))
    )
    if not valid:
        return ""
    written = _item_at(data, parts)
    near = _nearest(written, valid) if isinstance(written, str) else ""
    return f"{near}; valid values: {', '.join(valid)}"
