"""Canonical → Anthropic wire JSON: response content blocks and upstream `/v1/messages` request bodies.

Split out of `anthropic.py` (see its `Lossy:` section for every mapping decision made here).
"""

from __future__ import annotations

from typing import Any

import orjson

from .. import reasoning
from ..canonical import Block, Image, Message, Reasoning, Request, Text, ToolCall, ToolResult
from ..reasoning import ANTHROPIC_MIN_BUDGET
from .anthropic_stream import tool_id
from .common import b64, loads_json, sniff_image_type

API_VERSION = "2023-06-01"
DEFAULT_MAX_TOKENS = 4096
BILLING_PREFIX = "x-anthropic-billing-header:"


def _input_obj(arguments: str) -> dict[str, Any]:
    if not arguments.strip():
        return {}
    try:
        val = loads_json(arguments)  # too deep counts as not JSON
    except orjson.JSONDecodeError:
        return {"raw": arguments}
    return val if isinstance(val, dict) else {"value": val}


def _image_json(img: Image) -> dict[str, Any]:
    if img.data is not None:
        return {
            "type": "image",
            "source": {
                "type": "base64",
                "media_type": img.media_type or sniff_image_type(img.data),
                "data": b64(img.data),
            },
        }
    return {"type": "image", "source": {"type": "url", "url": img.url or ""}}


def response_block(b: Block) -> dict[str, Any] | None:
    if isinstance(b, Text):
        return {"type": "text", "text": b.text} if b.text else None  # no empty text blocks
    if isinstance(b, Reasoning) and not b.text and not b.signature and not b.redacted:
        return None
    if isinstance(b, ToolCall):
        return {"type": "tool_use", "id": tool_id(b.id), "name": b.name, "input": _input_obj(b.arguments)}
    if isinstance(b, Reasoning):
        if b.redacted is not None and not b.text and not b.signature:
            return {"type": "redacted_thinking", "data": b.redacted}
        return {"type": "thinking", "thinking": b.text, "signature": b.signature or ""}
    return None  # images/tool results in a response have no Anthropic form


# ---------------------------------------------------------------- upstream side: canonical → wire request


def cache_control(cache: str) -> dict[str, Any]:
    """Canonical `cache` (see anthropic.py `_cache`) → the wire `cache_control` object."""
    if cache.startswith("{"):
        try:
            obj = orjson.loads(cache)
        except orjson.JSONDecodeError:
            obj = None
        if isinstance(obj, dict):
            return obj
    return {"type": "ephemeral"} if cache == "ephemeral" else {"type": "ephemeral", "ttl": cache}


def _cached(blk: dict[str, Any], cache: str | None) -> dict[str, Any]:
    if cache:
        blk["cache_control"] = cache_control(cache)
    return blk


def _upstream_blocks(msg: Message) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = []
    rest: list[dict[str, Any]] = []
    for b in msg.content:
        if isinstance(b, Text):
            if b.text.strip():
                rest.append(_cached({"type": "text", "text": b.text}, b.cache))
        elif isinstance(b, Image):
            if b.data is not None or b.url:
                rest.append(_cached(_image_json(b), b.cache))
        elif isinstance(b, ToolCall) and msg.role == "assistant":
            rest.append(
                _cached(
                    {
                        "type": "tool_use",
                        "id": tool_id(b.id),
                        "name": b.name,
                        "input": _input_obj(b.arguments),
                    },
                    b.cache,
                )
            )
        elif isinstance(b, ToolResult) and msg.role == "user":
            content = [
                {"type": "text", "text": c.text} if isinstance(c, Text) else _image_json(c)
                for c in b.content
                if not isinstance(c, Text) or c.text.strip()
            ]
            blk: dict[str, Any] = {"type": "tool_result", "tool_use_id": tool_id(b.call_id)}
            if content:
                blk["content"] = content
            if b.is_error:
                blk["is_error"] = True
            results.append(_cached(blk, b.cache))
        elif isinstance(b, Reasoning) and msg.role == "assistant":
            if b.signature and ":" not in b.signature:  # namespaced (e.g. "gemini:…") = foreign
                rest.append({"type": "thinking", "thinking": b.text, "signature": b.signature})
            elif b.redacted and not b.text and not b.signature:
                rest.append({"type": "redacted_thinking", "data": b.redacted})
        # Video, misplaced blocks and unsigned reasoning are dropped (see Lossy)
    return results + rest


def _upstream_messages(
    messages: list[Message], inserts: dict[int, list[dict[str, Any]]]
) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for i, msg in enumerate(messages):
        if i in inserts:
            out.append({"role": "system", "content": inserts[i]})
        blocks = _upstream_blocks(msg)
        if not blocks:
            continue
        if out and out[-1]["role"] == msg.role:
            prev = out[-1]["content"]
            if msg.role == "user":  # keep tool_result blocks first in the merged turn
                res = [b for b in blocks if b["type"] == "tool_result"]
                others = [b for b in blocks if b["type"] != "tool_result"]
                n = sum(1 for b in prev if b["type"] == "tool_result")
                prev[n:n] = res
                prev.extend(others)
            else:
                prev.extend(blocks)
        else:
            out.append({"role": msg.role, "content": blocks})
    if len(messages) in inserts:
        out.append({"role": "system", "content": inserts[len(messages)]})
    if not out or out[0]["role"] != "user":
        out.insert(0, {"role": "user", "content": [{"type": "text", "text": "."}]})
    last = out[-1]
    if last["role"] == "assistant" and last["content"][-1]["type"] == "text":
        last["content"][-1]["text"] = last["content"][-1]["text"].rstrip()
    return out


def _upstream_thinking(req: Request, max_tokens: int, defaulted: bool) -> tuple[dict[str, Any] | None, int]:
    raw = req.extras.anthropic.thinking
    r = req.reasoning
    if raw is not None and raw.get("type") in ("adaptive", "disabled", "between_tools"):
        return raw, max_tokens
    if r is None or r.hint:
        return None, max_tokens  # a hint does not switch thinking on (an effort goes in output_config)
    if not r.enabled or r.effort == "none":
        return {"type": "disabled"}, max_tokens
    budget = reasoning.budget(r, ANTHROPIC_MIN_BUDGET) or reasoning.EFFORT_BUDGET["medium"]
    if max_tokens <= budget:
        if defaulted:
            max_tokens = budget + DEFAULT_MAX_TOKENS
        elif max_tokens - 1 >= 1024:
            budget = max_tokens - 1
        else:
            return None, max_tokens
    th: dict[str, Any] = {"type": "enabled", "budget_tokens": budget}
    if r.include_thoughts is False:
        th["display"] = "omitted"
    return th, max_tokens


def thinking_mode(req: Request) -> str | None:
    """ "enabled" or "adaptive" when an upstream body for `req` switches thinking on, else None.

    signatures.py: with "enabled" the last tool-use turn must open with its signed thinking block; adaptive
    thinking may have skipped thinking on that turn, so Anthropic does not require it then."""
    thinking, _ = _upstream_thinking(req, req.max_tokens or DEFAULT_MAX_TOKENS, req.max_tokens is None)
    tc = req.tool_choice
    if thinking is None or (bool(req.tools) and tc is not None and tc.mode in ("required", "tool")):
        return None
    mode = thinking.get("type")
    return mode if mode in ("enabled", "adaptive") else None


def _system_messages(req: Request) -> tuple[dict[int, list[dict[str, Any]]], set[int]]:
    """An Anthropic client's mid-conversation system messages, put back in place: position → content, and
    the indices of `req.system` they came from."""
    inserts: dict[int, list[dict[str, Any]]] = {}
    moved: set[int] = set()
    for start, end, pos in req.extras.anthropic.system_positions:
        if not 0 <= start < end <= len(req.system) or not 0 < pos <= len(req.messages):
            continue
        blocks = [_cached({"type": "text", "text": t.text}, t.cache) for t in req.system[start:end]]
        inserts.setdefault(pos, []).extend(blocks)
        moved.update(range(start, end))
    return inserts, moved


def upstream_body(req: Request, upstream_model: str) -> dict[str, Any]:
    max_tokens = req.max_tokens or DEFAULT_MAX_TOKENS
    thinking, max_tokens = _upstream_thinking(req, max_tokens, req.max_tokens is None)
    inserts, moved = _system_messages(req)
    body: dict[str, Any] = {
        "model": upstream_model,
        "max_tokens": max_tokens,
        "messages": _upstream_messages(req.messages, inserts),
    }
    system = [
        _cached({"type": "text", "text": t.text}, t.cache)
        for i, t in enumerate(req.system)
        if t.text.strip() and i not in moved
    ]
    billing = req.extras.anthropic.billing_header
    if billing is not None and billing.startswith(BILLING_PREFIX):
        system.insert(0, {"type": "text", "text": billing})
    if len(system) == 1 and "cache_control" not in system[0]:
        body["system"] = system[0]["text"]
    elif system:
        body["system"] = system
    tools: list[Any] = [
        _cached(
            {
                "name": t.name,
                "input_schema": t.parameters
                if "type" in t.parameters
                else {"type": "object", **t.parameters},
                **({"description": t.description} if t.description else {}),
            },
            t.cache,
        )
        for t in req.tools
    ]
    tools += req.extras.anthropic.server_tools
    if tools:
        body["tools"] = tools
        tc = req.tool_choice
        if tc is not None:
            wire: dict[str, Any] = {
                "type": {"auto": "auto", "required": "any", "none": "none", "tool": "tool"}[tc.mode]
            }
            if tc.mode == "tool":
                wire["name"] = tc.name or ""
            if tc.parallel is False and tc.mode != "none":
                wire["disable_parallel_tool_use"] = True
            body["tool_choice"] = wire
    thinking_on = thinking is not None and thinking.get("type") in ("enabled", "adaptive")
    if thinking_on and body.get("tool_choice", {}).get("type") in ("any", "tool"):
        thinking, thinking_on = None, False  # Anthropic: thinking cannot be combined with forced tool use
    if thinking is not None:
        body["thinking"] = thinking
    rf = req.response_format
    output_config: dict[str, Any] = dict(req.extras.anthropic.output_config)
    if req.extras.anthropic.effort is not None:
        output_config["effort"] = req.extras.anthropic.effort
    if rf is not None and rf.type == "json_schema" and rf.schema is not None:
        output_config["format"] = {"type": "json_schema", "schema": rf.schema}
    if output_config:
        body["output_config"] = output_config
    if req.stop:
        body["stop_sequences"] = req.stop
    # with thinking on, Anthropic rejects temperature/top_k changes and top_p below 0.95
    if req.temperature is not None and not thinking_on:
        body["temperature"] = req.temperature
    if req.top_k is not None and not thinking_on:
        body["top_k"] = req.top_k
    if req.top_p is not None and not (thinking_on and req.top_p < 0.95):
        body["top_p"] = req.top_p
    if isinstance(req.metadata.get("user_id"), str):
        body["metadata"] = {"user_id": req.metadata["user_id"]}
    if req.stream:
        body["stream"] = True
    for k, v in req.extras.anthropic.passthrough.items():
        body.setdefault(k, v)
    _limit_breakpoints(body)
    return body


def _limit_breakpoints(body: dict[str, Any], limit: int = 4) -> None:
    """Anthropic takes at most 4 `cache_control` markers: keep the last ones in prompt order (tools, system,
    messages), which cover the longest prefixes."""
    marked = [b for b in body.get("tools") or () if isinstance(b, dict) and "cache_control" in b]
    if isinstance(body.get("system"), list):
        marked += [b for b in body["system"] if "cache_control" in b]
    marked += [b for m in body["messages"] for b in m["content"] if "cache_control" in b]
    for b in marked[: max(0, len(marked) - limit)]:
        del b["cache_control"]
