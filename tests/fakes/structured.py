"""What a fake model answers when the client asks for structured output or forces a tool call.

`instance(schema)` builds a value that validates against a JSON schema (the subset frameworks send: objects,
arrays, scalars, enums, const, anyOf/oneOf/allOf, $ref into $defs/definitions, nullable types), so a framework
that parses the reply into its own type (pydantic models, zod schemas) succeeds exactly when the gateway carried
the schema to the upstream and the answer back. A property named like a city is "Paris"; other strings are
"sunny". Each fake reads the schema and the tool choice from its own wire format (`response_schema`,
`forced_tool` below take the raw request) into `View.response_schema` / `View.tool_choice`.
"""

from __future__ import annotations

import json
from typing import Any

JSON_MODE: dict[str, Any] = {
    "type": "object"
}  # JSON mode without a schema: some object (or one the prompt describes)
_SCALARS: dict[str, Any] = {"integer": 21, "number": 21.5, "boolean": True, "null": None}


def instance(schema: Any, key: str = "", root: Any = None, depth: int = 0) -> Any:
    """A value valid under `schema` (JSON Schema; Gemini's upper-case OpenAPI types too)."""
    root = schema if root is None else root
    if not isinstance(schema, dict) or depth > 20:
        return "sunny"
    if "$ref" in schema:
        name = str(schema["$ref"]).rsplit("/", 1)[-1]
        defs = (
            {**(root.get("definitions") or {}), **(root.get("$defs") or {})} if isinstance(root, dict) else {}
        )
        return instance(defs.get(name, {}), key, root, depth + 1)
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    for alt in ("anyOf", "oneOf"):
        if schema.get(alt):
            options = [s for s in schema[alt] if not (isinstance(s, dict) and s.get("type") == "null")]
            return instance((options or schema[alt])[0], key, root, depth + 1)
    if schema.get("allOf"):
        merged: dict[str, Any] = {}
        for part in schema["allOf"]:
            merged.update(part if isinstance(part, dict) else {})
        return instance(merged, key, root, depth + 1)
    typ = schema.get("type")
    if isinstance(typ, list):
        typ = next((t for t in typ if t != "null"), "null")
    typ = typ.lower() if isinstance(typ, str) else ("object" if "properties" in schema else "string")
    if typ == "object":
        props = schema.get("properties") or {}
        return {k: instance(v, k, root, depth + 1) for k, v in props.items()}
    if typ == "array":
        return [instance(schema.get("items") or {}, key, root, depth + 1)]
    if typ in _SCALARS:
        return _SCALARS[typ]
    return "Paris" if "city" in key.lower() else "sunny"


def schema_in_text(text: str) -> dict[str, Any] | None:
    """A JSON schema written into a prompt (JSON modes that describe the schema in words): the first JSON object
    in the text that has `properties`."""
    decoder = json.JSONDecoder()
    at = text.find("{")
    while at >= 0:
        try:
            obj, _ = decoder.raw_decode(text, at)
        except ValueError:
            obj = None
        if isinstance(obj, dict) and isinstance(obj.get("properties"), dict):
            return obj
        at = text.find("{", at + 1)
    return None


def response_schema(body: dict[str, Any], protocol: str) -> dict[str, Any] | None:
    """The schema a request asks its answer to follow (JSON_MODE for plain JSON mode), else None."""
    if protocol == "chat":
        rf = body.get("response_format") or {}
        if rf.get("type") == "json_schema":
            return (rf.get("json_schema") or {}).get("schema") or {}
        return JSON_MODE if rf.get("type") == "json_object" else None
    if protocol == "responses":
        fmt = (body.get("text") or {}).get("format") or {}
        if fmt.get("type") == "json_schema":
            return fmt.get("schema") or {}
        return JSON_MODE if fmt.get("type") == "json_object" else None
    if protocol == "anthropic":
        fmt = (body.get("output_config") or {}).get("format") or body.get("output_format") or {}
        return fmt.get("schema") or {} if fmt.get("type") == "json_schema" else None
    if protocol == "gemini":
        gc = body.get("generationConfig") or body.get("generation_config") or {}
        for k in (
            "responseJsonSchema",
            "response_json_schema",
            "responseSchema",
            "response_schema",
            "_responseJsonSchema",
        ):
            if gc.get(k):
                return gc[k]
        mime = gc.get("responseMimeType") or gc.get("response_mime_type")
        return JSON_MODE if mime == "application/json" else None
    fmt = body.get("format")  # ollama: "json" or a schema
    return fmt if isinstance(fmt, dict) else JSON_MODE if fmt == "json" else None


def forced_tool(body: dict[str, Any], protocol: str) -> str | None:
    """ "any" when the request forces some tool call, the tool's name when it forces one, else None."""
    if protocol in ("chat", "responses"):
        tc = body.get("tool_choice")
        if tc == "required":
            return "any"
        if isinstance(tc, dict) and tc.get("type") == "function":
            return (tc.get("function") or {}).get("name") or tc.get("name")
        return None
    if protocol == "anthropic":
        tc = body.get("tool_choice") or {}
        return "any" if tc.get("type") == "any" else tc.get("name") if tc.get("type") == "tool" else None
    if protocol == "gemini":
        cfg = body.get("toolConfig") or body.get("tool_config") or {}
        fcc = cfg.get("functionCallingConfig") or cfg.get("function_calling_config") or {}
        if str(fcc.get("mode", "")).upper() != "ANY":
            return None
        names = fcc.get("allowedFunctionNames") or fcc.get("allowed_function_names") or []
        return names[0] if len(names) == 1 else "any"
    return None


def call_envelope(fmt: Any) -> tuple[str, dict[str, Any]] | None:
    """A JSON-schema `format` that describes a tool call — {"name": one of the tools, "arguments": its
    parameters}, an anyOf of them for a choice — as a gateway sends to force a call on an upstream without
    tool_choice: ("any" or the one tool's name, {name: parameters}), else None."""
    if not isinstance(fmt, dict):
        return None
    tools: dict[str, Any] = {}
    for option in fmt.get("anyOf") or [fmt]:
        props = option.get("properties") if isinstance(option, dict) else None
        name = (props or {}).get("name") or {}
        names = name.get("enum") or ([name["const"]] if "const" in name else [])
        if not isinstance(props, dict) or set(props) != {"name", "arguments"} or len(names) != 1:
            return None
        tools[names[0]] = props["arguments"]
    return ("any" if len(tools) > 1 else next(iter(tools))), tools
