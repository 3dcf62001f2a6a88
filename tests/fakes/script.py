"""The scripted 'model' every fake upstream runs, so the whole client×upstream matrix expects one answer.

Each fake parses its own wire format (raw dicts — deliberately independent of smolgate's codecs) into a
`View`, asks `plan(view)` what to say, and renders the `Plan` in its own wire format.

Magic words in the last user text drive behaviour:
  FAIL_STATUS_<code>   reply with that HTTP status (429 adds Retry-After: 1)
  FAIL_MIDSTREAM       stream two chunks, then the protocol's in-stream error
  USAGE_DETAIL         report half the prompt as cache reads and 3 reasoning tokens, each fake in its protocol's
                       own convention (what the ledger must turn back into the same canonical counts)
  SLOW                 0.25 s between chunks (incremental-streaming and disconnect tests)
  CHAR_CHUNKS          stream the answer 3 characters per chunk (placeholders split across chunks)
  weather (with tools) call the tool that takes a city (else the first) with {"city": "Paris"}
  PARALLEL             (with weather) call it twice in one turn: Paris, then Tokyo
  AGENT_WRITE <path>   (with tools) act like a coding agent's model: call the client's own file-writing tool
                       (a tool whose schema has a path and a content property) to write AGENT_TEXT to <path>,
                       else its shell tool (a `command` property, string or argv array); after the tool
                       result, answer with text. Works with any agent's tool names (Write, write_file, shell…).

Without magic words: a request that forces a tool call (tool_choice required/any/named) calls the named tool,
or for "any" the last tool once a tool result is in (frameworks list their output tools last), with arguments
built from its schema; a request for structured output (a response schema or JSON mode) is answered with a
JSON value valid under the schema (structured.py; in JSON mode, a schema the prompt spells out). Several tool
results of one turn are joined with "; ".
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from .structured import instance, schema_in_text


@dataclass
class View:
    system: str = ""
    turns: list[tuple[str, str]] = field(default_factory=list)  # (user|assistant, text)
    images: int = 0
    tool_names: list[str] = field(default_factory=list)
    tool_schemas: dict[str, dict] = field(default_factory=dict)  # name → JSON schema of its parameters
    tool_result: str | None = None  # text of a tool result in the last user turn
    max_tokens: int | None = None
    stop: list[str] = field(default_factory=list)
    response_schema: dict | None = None  # structured output asked for (structured.JSON_MODE: any object)
    tool_choice: str | None = None  # a forced call: "any" or the tool's name

    @property
    def last_user_text(self) -> str:
        for role, text in reversed(self.turns):
            if role == "user" and text:
                return text
        return ""


@dataclass
class Plan:
    chunks: list[str] = field(default_factory=list)
    tool_call: tuple[str, dict] | None = None
    more_calls: list[tuple[str, dict]] = field(default_factory=list)  # parallel calls after tool_call
    stop_reason: str = "end_turn"  # end_turn | max_tokens | stop_sequence | tool_use
    stop_sequence: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0  # the visible answer's tokens (reasoning_tokens come on top)
    cached_tokens: int = 0  # part of input_tokens
    reasoning_tokens: int = 0
    fail_status: int | None = None
    fail_midstream: bool = False
    delay: float = 0.0

    @property
    def text(self) -> str:
        return "".join(self.chunks)

    @property
    def calls(self) -> list[tuple[str, dict]]:
        return [self.tool_call, *self.more_calls] if self.tool_call else []


def join_results(prev: str | None, text: str) -> str:
    """The results of several calls answered in one turn, as one text."""
    return text if prev is None else f"{prev}; {text}"


def count_words(text: str) -> int:
    return len(text.split())


def plan(view: View) -> Plan:
    last = view.last_user_text
    p = Plan(input_tokens=count_words(view.system) + sum(count_words(t) for _, t in view.turns) + view.images)
    m = re.search(r"FAIL_STATUS_(\d{3})", last)
    if m:
        p.fail_status = int(m.group(1))
        return p
    p.fail_midstream = "FAIL_MIDSTREAM" in last
    if "USAGE_DETAIL" in last:
        p.cached_tokens, p.reasoning_tokens = p.input_tokens // 2, 3
    p.delay = 0.25 if "SLOW" in last else 0.0
    agent = re.search(r"AGENT_WRITE (\S+)", last)
    if agent and view.tool_result is None and view.tool_names:
        p.tool_call, p.stop_reason, p.output_tokens = agent_call(view, agent.group(1)), "tool_use", 5
        return p
    forced = view.tool_choice if view.tool_names and view.tool_choice in ("any", *view.tool_names) else None
    weather = next(
        (n for n in view.tool_names if "city" in ((view.tool_schemas.get(n) or {}).get("properties") or {})),
        view.tool_names[0] if view.tool_names else None,
    )
    if (
        view.tool_result is None
        and weather
        and "weather" in last.lower()
        and forced in (None, "any", weather)
    ):
        p.tool_call = (weather, {"city": "Paris"})
        if "PARALLEL" in last:
            p.more_calls = [(weather, {"city": "Tokyo"})]
        p.stop_reason = "tool_use"
        p.output_tokens = 5
        return p
    if forced:
        name = view.tool_names[-1] if forced == "any" else forced
        p.tool_call, p.stop_reason = (name, instance(view.tool_schemas.get(name) or {})), "tool_use"
        p.output_tokens = 5
        return p
    if view.response_schema is not None:
        schema = view.response_schema
        if not schema.get("properties"):  # JSON mode: follow a schema the prompt spells out, if any
            schema = schema_in_text(f"{view.system}\n{last}") or schema
        reply = json.dumps(instance(schema))
    elif view.tool_result is not None:
        reply = f"The tool said: {view.tool_result}"
    else:
        reply = (
            f"You said: {last} | system={view.system or 'none'} images={view.images} turns={len(view.turns)}"
        )
    if "SLOW" in last:
        reply = "one two three four five six seven eight"
    for s in view.stop:
        if s and s in reply:
            reply, p.stop_reason, p.stop_sequence = reply[: reply.index(s)], "stop_sequence", s
            break
    words = reply.split(" ")
    if view.max_tokens is not None and len(words) > view.max_tokens:
        words, p.stop_reason, p.stop_sequence = words[: view.max_tokens], "max_tokens", None
    p.chunks = [w + (" " if i < len(words) - 1 else "") for i, w in enumerate(words)]
    if "CHAR_CHUNKS" in last:
        text = "".join(p.chunks)
        p.chunks = [text[i : i + 3] for i in range(0, len(text), 3)]
    p.output_tokens = len(words)
    return p


AGENT_TEXT = "hello from smolgate"
_PATH_KEYS = ("file_path", "filePath", "absolute_path", "path", "filename")
_CONTENT_KEYS = ("content", "contents", "text")


def agent_call(view: View, path: str) -> tuple[str, dict]:
    """The call a coding model would make to write AGENT_TEXT to `path` with the client's own tools."""
    for name in view.tool_names:
        props = (view.tool_schemas.get(name) or {}).get("properties") or {}
        pk = next((k for k in _PATH_KEYS if k in props), None)
        ck = next((k for k in _CONTENT_KEYS if k in props), None)
        if pk and ck and "write" in name.lower():
            return name, {pk: path, ck: AGENT_TEXT + "\n"}
    for name in view.tool_names:
        props = (view.tool_schemas.get(name) or {}).get("properties") or {}
        key = next((k for k in ("command", "cmd") if k in props), None)  # Codex's exec_command takes `cmd`
        if key:
            cmd = f"printf '%s\\n' '{AGENT_TEXT}' > {path}"
            if (props[key] or {}).get("type") == "array":
                return name, {key: ["bash", "-lc", cmd]}
            return name, {key: cmd}
    raise ValueError(f"no file-writing or shell tool among {view.tool_names}")
