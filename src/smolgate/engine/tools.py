"""Tool calling for models without native tools (SmolLM2 / SmolVLM2): tools are described in the system
prompt, and calls are parsed out of the generated text, also while streaming.

The SmolLM2 chat template in the packaged GGUF (`tokenizer.chat_template`) only renders role + content and has
no tool format of its own, so we use the widespread Hermes/Qwen-style tags:

    <tool_call>{"name": "get_weather", "arguments": {"city": "Paris"}}</tool_call>

Lessons taken from ds2api (which parses DeepSeek-web text the same way): never leak raw markup into the text
(hold back a possible opening tag), never lose text (a call body that does not parse is passed on as text),
and accept what models actually write (fences, lists, "parameters", string arguments, a missing closing tag).
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeAlias

OPEN, CLOSE = "<tool_call>", "</tool_call>"
RESULT_OPEN, RESULT_CLOSE = "<tool_response>", "</tool_response>"
_ARG_KEYS = ("arguments", "parameters", "args", "input")
_FENCE = re.compile(r"^\s*```[\w-]*\s*|\s*```\s*$")
_decoder = json.JSONDecoder()


@dataclass(frozen=True, slots=True)
class ToolSpec:
    name: str
    description: str = ""
    parameters: Mapping[str, Any] = field(default_factory=lambda: {"type": "object", "properties": {}})


@dataclass(frozen=True, slots=True)
class TextEvent:
    text: str


@dataclass(frozen=True, slots=True)
class ToolCallEvent:
    name: str
    arguments: str  # a JSON object as text (re-serialised, so always valid JSON)


Event: TypeAlias = TextEvent | ToolCallEvent


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def render_tools_prompt(
    tools: list[ToolSpec], tool_choice: str | None = None, forced_name: str | None = None
) -> str:
    """A system-prompt section describing `tools` and the call format; "" when no tool may be called.

    tool_choice: None/"auto" (model decides), "none", "required" (at least one call). forced_name: the one
    tool that must be called (only that tool is described, so a small model cannot pick another)."""
    if tool_choice == "none" or not tools:
        return ""
    if forced_name is not None:
        tools = [t for t in tools if t.name == forced_name]
        if not tools:
            raise ValueError(f"tool {forced_name!r} is not among the tools")
    lines = [
        "# Tools",
        "",
        "You can call these functions (JSON Schema parameters):",
        "<tools>",
        *(_dumps({"name": t.name, "description": t.description, "parameters": t.parameters}) for t in tools),
        "</tools>",
        "",
        "To call a function, write exactly one line per call, nothing else on that line:",
        OPEN + '{"name": "<function name>", "arguments": {<the arguments as a JSON object>}}' + CLOSE,
    ]
    if forced_name is not None:
        lines.append(f'You must call "{forced_name}" now. Reply with the {OPEN} line only.')
    elif tool_choice == "required":
        lines.append(f"You must call at least one function now. Reply with {OPEN} lines only.")
    else:
        lines.append("Call a function only when it helps to answer; otherwise reply normally.")
    lines.append(f"Results come back in {RESULT_OPEN} blocks; then answer using them.")
    return "\n".join(lines)


def tool_call_schema(tools: list[ToolSpec], forced_name: str | None = None) -> dict[str, Any]:
    """JSON Schema of one call body, for constrained decoding after an `<tool_call>` prefix (tool_choice
    "required" or a forced function)."""
    defs: dict[str, Any] = {}
    branches = []
    for i, t in enumerate(t for t in tools if forced_name is None or t.name == forced_name):
        params = _hoist_defs(dict(t.parameters) or {"type": "object"}, f"t{i}_", defs)
        branches.append(
            {
                "type": "object",
                "properties": {"name": {"const": t.name}, "arguments": params},
                "required": ["name", "arguments"],
                "additionalProperties": False,
            }
        )
    if not branches:
        raise ValueError("no tool to call")
    schema = branches[0] if len(branches) == 1 else {"anyOf": branches}
    return {**schema, "$defs": defs} if defs else schema


def _hoist_defs(params: dict[str, Any], prefix: str, defs: dict[str, Any]) -> Any:
    """Move a parameters schema's `$defs`/`definitions` to the call schema's root (local `$ref`s resolve
    from the root), prefixed per tool so two tools' definitions cannot collide."""
    local = {**params.pop("definitions", {}), **params.pop("$defs", {})}

    def rewrite(node: Any) -> Any:
        if isinstance(node, dict):
            out = {k: rewrite(v) for k, v in node.items()}
            ref = out.get("$ref")
            if isinstance(ref, str) and ref.startswith(("#/$defs/", "#/definitions/")):
                out["$ref"] = "#/$defs/" + prefix + ref.split("/", 2)[2]
            return out
        return [rewrite(v) for v in node] if isinstance(node, list) else node

    defs.update({prefix + k: rewrite(v) for k, v in local.items()})
    return rewrite(params)


def render_tool_call(name: str, args_json: str) -> str:
    """An assistant turn's call, as the model is asked to write it (for the conversation history)."""
    try:
        args: Any = json.loads(args_json) if args_json.strip() else {}
    except (json.JSONDecodeError, RecursionError):  # not JSON, or nested past the parser's stack: as text
        args = args_json
    return OPEN + _dumps({"name": name, "arguments": args}) + CLOSE


def render_tool_result(name: str, content: str) -> str:
    """A tool result for the history (SmolLM2 knows no "tool" role: send it as a user turn)."""
    try:
        value: Any = json.loads(content)
    except (json.JSONDecodeError, RecursionError):  # not JSON, or nested past the parser's stack: as text
        value = content
    return RESULT_OPEN + _dumps({"name": name, "content": value}) + RESULT_CLOSE


def _one_call(obj: Any) -> tuple[str, str] | None:
    """{"name", "arguments"} (or "parameters"/"args"/"input", or OpenAI's {"function": {...}}) -> call."""
    if not isinstance(obj, dict):
        return None
    if isinstance(obj.get("function"), dict) and "name" not in obj:
        obj = obj["function"]
    name = obj.get("name")
    if not isinstance(name, str) or not name.strip():
        return None
    args: Any = next((obj[k] for k in _ARG_KEYS if k in obj), {})
    if isinstance(args, str):  # arguments given as a JSON string
        try:
            args = json.loads(args) if args.strip() else {}
        except json.JSONDecodeError:
            return None
    if args is None:
        args = {}
    if not isinstance(args, dict):
        return None
    return name.strip(), _dumps(args)


def parse_calls(body: str) -> list[tuple[str, str]] | None:
    """The calls in one tag body: one JSON object, several (whitespace/comma separated) or a JSON list;
    code fences and stray closing brackets after the JSON are tolerated. None if anything else is there."""
    calls, rest = _leading_calls(body)
    return calls if calls and not rest.strip("}] \t\r\n") else None


def _leading_calls(body: str) -> tuple[list[tuple[str, str]], str]:
    """The calls at the start of `body` and the text after them (stops at the first non-call)."""
    text = _FENCE.sub("", body.strip())
    calls: list[tuple[str, str]] = []
    pos = 0
    while True:
        start = pos
        while pos < len(text) and text[pos] in " \t\r\n,":
            pos += 1
        try:
            value, end = _decoder.raw_decode(text, pos)
        except json.JSONDecodeError:
            return calls, text[start:]
        found = [_one_call(item) for item in (value if isinstance(value, list) else [value])]
        if not found or any(c is None for c in found):
            return calls, text[start:]
        calls.extend(c for c in found if c is not None)
        pos = end


def _partial_suffix(text: str, tag: str) -> int:
    """Length of the longest suffix of `text` that is a proper prefix of `tag` (what must be held back)."""
    for n in range(min(len(tag) - 1, len(text)), 0, -1):
        if text.endswith(tag[:n]):
            return n
    return 0


class ToolCallParser:
    """Streaming: `feed(delta)` -> events, `close()` -> the rest. Text passes through at once except a tail
    that could begin `<tool_call>`; a call's body is buffered until `</tool_call>` (or the next
    `<tool_call>`, or the end of the stream) and then emitted as ToolCallEvents, or as text if it does not
    parse. known_names: if given, a call to another name stays text (a case-insensitive match is fixed up)."""

    def __init__(self, known_names: Collection[str] | None = None) -> None:
        self._known = {n.lower(): n for n in known_names} if known_names is not None else None
        self._buf = ""  # TEXT: a held-back partial "<tool_call>"; CALL: the body so far
        self._in_call = False

    def feed(self, delta: str) -> list[Event]:
        events: list[Event] = []
        self._buf += delta
        while True:
            if not self._in_call:
                i = self._buf.find(OPEN)
                if i < 0:
                    hold = _partial_suffix(self._buf, OPEN)
                    self._emit_text(events, self._buf[: len(self._buf) - hold])
                    self._buf = self._buf[len(self._buf) - hold :]
                    return events
                self._emit_text(events, self._buf[:i])
                self._buf, self._in_call = self._buf[i + len(OPEN) :], True
            else:
                end, again = self._buf.find(CLOSE), self._buf.find(OPEN)
                if end < 0 and again < 0:
                    return events
                if again >= 0 and (end < 0 or again < end):  # a new call opened: the previous one ended
                    self._finish_call(events, self._buf[:again], closed=False)
                    self._buf = self._buf[again:]
                else:
                    self._finish_call(events, self._buf[:end], closed=True)
                    self._buf = self._buf[end + len(CLOSE) :]
                self._in_call = False

    def close(self) -> list[Event]:
        events: list[Event] = []
        if self._in_call:
            self._finish_call(events, self._buf, closed=False)
        else:
            self._emit_text(events, self._buf)
        self._buf, self._in_call = "", False
        return events

    def _finish_call(self, events: list[Event], body: str, *, closed: bool) -> None:
        calls, rest = parse_calls(body), ""
        if calls is None and not closed:  # unclosed: a complete call followed by prose is still a call
            calls, rest = _leading_calls(body)
            calls, rest = (calls, rest) if calls else (None, "")
        if calls is not None and self._known is not None:
            fixed = [(self._known.get(n.lower()), a) for n, a in calls]
            calls = None if any(n is None for n, _ in fixed) else [(n, a) for n, a in fixed if n is not None]
        if calls is None:
            self._emit_text(events, OPEN + body + (CLOSE if closed else ""))
        else:
            events.extend(ToolCallEvent(n, a) for n, a in calls)
            self._emit_text(events, rest)

    @staticmethod
    def _emit_text(events: list[Event], text: str) -> None:
        if not text:
            return
        if events and isinstance(events[-1], TextEvent):
            events[-1] = TextEvent(events[-1].text + text)
        else:
            events.append(TextEvent(text))
