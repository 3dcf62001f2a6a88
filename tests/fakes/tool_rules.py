"""How the real APIs refuse a tool loop whose results do not answer its calls (the fakes refuse the same).

Each check takes the raw wire history and returns the API's own error message, or None when it would pass.
A gateway that loses, renames or reorders a call id, or drops a result, fails here as it would upstream.
"""

from __future__ import annotations

from typing import Any


def _blocks(message: dict[str, Any], typ: str) -> list[dict[str, Any]]:
    content = message.get("content")
    return (
        [b for b in content if isinstance(b, dict) and b.get("type") == typ]
        if isinstance(content, list)
        else []
    )


def anthropic_tool_pairing(messages: list[Any]) -> str | None:
    """Every tool_result answers a tool_use of the message before; every tool_use is answered in the next."""
    seen: set[str] = set()
    for i, m in enumerate(messages):
        if not isinstance(m, dict):
            continue
        uses = [b.get("id") for b in _blocks(m, "tool_use")] if m.get("role") == "assistant" else []
        for uid in uses:
            if uid in seen:
                return f"messages.{i}: `tool_use` ids must be unique"
            seen.add(uid)
        if uses:
            nxt = messages[i + 1] if i + 1 < len(messages) and isinstance(messages[i + 1], dict) else {}
            answered = {b.get("tool_use_id") for b in _blocks(nxt, "tool_result")}
            missing = [u for u in uses if u not in answered]
            last = i + 1 == len(messages)  # a trailing tool_use (prefill) is the model's turn to finish
            if missing and not last:
                return (
                    f"messages.{i}: `tool_use` ids were found without `tool_result` blocks immediately "
                    f"after: {', '.join(map(str, missing))}. Each `tool_use` block must have a corresponding "
                    "`tool_result` block in the next message."
                )
        if m.get("role") == "user":
            prev = messages[i - 1] if i > 0 and isinstance(messages[i - 1], dict) else {}
            asked = {b.get("id") for b in _blocks(prev, "tool_use")}
            content = m.get("content") if isinstance(m.get("content"), list) else []
            for j, b in enumerate(content):
                if (
                    isinstance(b, dict)
                    and b.get("type") == "tool_result"
                    and b.get("tool_use_id") not in asked
                ):
                    return (
                        f"messages.{i}.content.{j}: unexpected `tool_use_id` found in `tool_result` blocks: "
                        f"{b.get('tool_use_id')}. Each `tool_result` block must have a corresponding "
                        "`tool_use` block in the previous message."
                    )
    return None


def _parts(content: Any, key: str) -> list[Any]:
    parts = content.get("parts") if isinstance(content, dict) else None
    return [p[key] for p in parts or () if isinstance(p, dict) and key in p]


def gemini_tool_pairing(contents: list[Any]) -> str | None:
    """A functionResponse turn follows a functionCall turn and answers each of its calls."""
    for i, c in enumerate(contents):
        responses = _parts(c, "functionResponse")
        if not responses:
            continue
        calls = _parts(contents[i - 1], "functionCall") if i > 0 else []
        if not calls:
            return "Please ensure that function response turn comes immediately after a function call turn."
        if len(responses) != len(calls):
            return (
                "Please ensure that the number of function response parts is equal to the number of function "
                "call parts of the function call turn."
            )
    return None
