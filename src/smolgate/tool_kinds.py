"""Tool kinds beyond plain functions, and how protocols that only know functions see them.

The OpenAI Responses API has tools other protocols lack: a `namespace` groups function (or custom) tools
under one name, and a `custom` tool takes free-form text instead of JSON arguments. The canonical model
keeps every tool a function, so that every other codec renders it untouched:

- a namespaced tool's canonical `name` is the flat `<namespace>__<name>` (shortened with a hash when longer
  than every upstream allows), with `Tool.namespace` / `Tool.local_name` remembering the parts;
- a custom tool is a function with one string argument, `input`; its calls carry `{"input": "<text>"}` as
  their JSON arguments.

Only the Responses codec reverses this (`lookup` by flat name), on the way out to a Responses client or a
Responses upstream; a call whose name matches no tool of the request stays a plain function call.
Hosted tools (web_search, mcp, …) have no canonical form at all: they ride in `Request.extras.responses` and
reach Responses upstreams only (see `hosted_tools`).
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

import orjson

from .canonical import Request, Tool
from .protocols.common import loads_json

NAME_MAX = 64  # OpenAI and Gemini function names: at most 64 characters
_NAME_OK = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,63}\Z")
SEP = "__"
CUSTOM_ARG = "input"
CUSTOM_PARAMETERS: dict[str, Any] = {
    "type": "object",
    "properties": {CUSTOM_ARG: {"type": "string", "description": "The tool's free-form input text."}},
    "required": [CUSTOM_ARG],
    "additionalProperties": False,
}


def flat_name(namespace: str | None, name: str) -> str:
    """The one function name a namespaced tool has for protocols without namespaces; deterministic, so a
    decoder without the request (an upstream's answer) finds the same name."""
    if not namespace:
        return name
    flat = f"{namespace}{SEP}{name}"
    if _NAME_OK.match(flat):
        return flat
    digest = hashlib.sha256(flat.encode()).hexdigest()[:10]
    head = re.sub(r"[^A-Za-z0-9_-]", "_", flat)[: NAME_MAX - len(digest) - 1]
    return f"{head if head[:1].isalpha() or head[:1] == '_' else '_' + head[1:]}_{digest}"


def custom_args(text: str) -> str:
    """A custom tool's free-form input as the JSON arguments of its function form."""
    return orjson.dumps({CUSTOM_ARG: text}).decode()


def custom_input(arguments: str) -> str:
    """The free-form input back out of function arguments; non-conforming arguments pass as they are."""
    try:
        obj = loads_json(arguments or "{}")  # too deep to re-encode counts as not JSON
    except orjson.JSONDecodeError:
        return arguments
    if isinstance(obj, dict):
        if not obj:
            return ""
        value = obj.get(CUSTOM_ARG)
        if isinstance(value, str):
            return value
        if len(obj) == 1:  # a model that named the one argument differently
            only = next(iter(obj.values()))
            return only if isinstance(only, str) else orjson.dumps(only).decode()
    return arguments


def lookup(req: Request) -> dict[str, Tool]:
    """The request's tools by canonical (flat) name."""
    return {t.name: t for t in req.tools}


def hosted_tools(req: Request) -> list[dict[str, Any]]:
    """The client's hosted tool definitions, as sent (web_search, mcp, …)."""
    return req.extras.responses.hosted_tools


def hosted_names(req: Request) -> list[str]:
    """What to call each hosted tool in a log line or header: its type (and server label for MCP)."""
    names = []
    for t in hosted_tools(req):
        typ = str(t.get("type") or "unknown")
        label = t.get("server_label")
        name = f"{typ}:{label}" if typ == "mcp" and isinstance(label, str) else typ
        names.append(re.sub(r"[^A-Za-z0-9_.:-]", "_", name)[:64])  # client text bound for a header line
    return names
