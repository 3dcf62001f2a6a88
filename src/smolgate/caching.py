"""Prompt-cache breakpoints for Anthropic upstreams (`prompt_caching: auto` on a model alias).

Anthropic caches a prompt prefix only up to blocks marked `cache_control` (at most 4 per request). Anthropic
clients mark their own (Claude Code: system, tools, the latest turns) and those pass through unchanged.
OpenAI, Gemini and Ollama clients have no such marker, so for an alias with `prompt_caching: auto` the
gateway marks, on requests that carry none: the end of the system prompt, the end of the tool list and the
last block of each of the last two user turns (the rolling window: this turn reads what the previous turn
wrote). Markers never change the prompt's text, so the cached prefix stays byte-identical across turns.
"""

from __future__ import annotations

import msgspec

from .canonical import Block, Image, Message, Request, Text, ToolResult

MAX_BREAKPOINTS = 4  # Anthropic rejects more
EPHEMERAL = "ephemeral"
_MARKABLE = (Text, Image, ToolResult)


def has_markers(req: Request) -> bool:
    return (
        any(t.cache for t in req.system)
        or any(t.cache for t in req.tools)
        or any(getattr(b, "cache", None) for m in req.messages for b in m.content)
    )


def _mark_last(blocks: list[Block]) -> list[Block] | None:
    for i in range(len(blocks) - 1, -1, -1):
        b = blocks[i]
        if isinstance(b, _MARKABLE) and not (isinstance(b, Text) and not b.text.strip()):
            out = list(blocks)
            out[i] = msgspec.structs.replace(b, cache=EPHEMERAL)
            return out
    return None


def inject(req: Request) -> Request:
    """Breakpoints as described above; a request that already has any is returned unchanged."""
    if has_markers(req):
        return req
    left = MAX_BREAKPOINTS
    system = req.system
    marked = _mark_last(list(system))
    if marked is not None:
        system, left = marked, left - 1  # type: ignore[assignment]  # only Text blocks in a system prompt
    tools = req.tools
    if tools:
        tools = [*tools[:-1], msgspec.structs.replace(tools[-1], cache=EPHEMERAL)]
        left -= 1
    messages = list(req.messages)
    turns = 0
    for i in range(len(messages) - 1, -1, -1):
        if turns == 2 or left == 0:
            break
        if messages[i].role != "user":
            continue
        content = _mark_last(messages[i].content)
        if content is not None:
            messages[i] = Message(role="user", content=content)
            turns += 1
            left -= 1
    return msgspec.structs.replace(req, system=system, tools=tools, messages=messages)
