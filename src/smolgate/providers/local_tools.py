"""Tool calling and structured output for local models that have neither natively.

Tools are described in the system prompt (engine/tools.py) and calls are parsed out of the streamed
text. When the client *requires* a call (tool_choice required / a named tool) the output is constrained
to the call's JSON, so a call always comes back; json_object / json_schema responses are constrained
the same way (engine/json_constraint.py), so they always parse and validate.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from ..canonical import (
    BlockStart,
    BlockStop,
    Event,
    Request,
    Text,
    TextDelta,
    ToolArgsDelta,
    ToolCall,
    ToolResult,
)
from ..engine.tools import (
    TextEvent,
    ToolCallEvent,
    ToolCallParser,
    ToolSpec,
    parse_calls,
    render_tool_call,
    render_tool_result,
    render_tools_prompt,
    tool_call_schema,
)
from ..errors import invalid
from ..protocols.common import new_id


@dataclass
class OutputPlan:
    """How to prompt and how to read the output for one request."""

    system_addendum: str = ""
    schema: dict[str, Any] | None = None  # the JSON schema to constrain to (None: any JSON object)
    constrained: bool = False  # json mode / forced tool call
    forced_call: bool = False  # the whole output is one call body: {"name": ..., "arguments": {...}}
    tool_names: list[str] = field(default_factory=list)


def plan_output(req: Request) -> OutputPlan:
    plan = OutputPlan()
    mode = req.tool_choice.mode if req.tool_choice else "auto"
    if req.tools and mode != "none":
        specs = [ToolSpec(t.name, t.description or "", t.parameters) for t in req.tools]
        forced = req.tool_choice.name if req.tool_choice and mode == "tool" else None
        if forced is not None and forced not in {t.name for t in req.tools}:
            raise invalid(f"tool_choice names '{forced}', which is not among the tools", param="tool_choice")
        plan.system_addendum = render_tools_prompt(specs, mode, forced)
        plan.tool_names = [t.name for t in req.tools]
        if mode in ("required", "tool"):
            plan.schema, plan.constrained, plan.forced_call = tool_call_schema(specs, forced), True, True
            return plan
    rf = req.response_format
    if rf is not None and rf.type in ("json_object", "json_schema"):
        plan.schema = rf.schema if rf.type == "json_schema" and rf.schema is not None else None
        plan.constrained = True
    return plan


def history_text(block: ToolCall | ToolResult) -> str:
    """Earlier calls and results, in the same text format the model is told to use."""
    if isinstance(block, ToolCall):
        return render_tool_call(block.name, block.arguments)
    content = "".join(c.text for c in block.content if isinstance(c, Text))
    return render_tool_result(block.name or block.call_id, content)


class OutputReader:
    """Engine text deltas → canonical block events (text blocks and tool calls), in order."""

    def __init__(self, plan: OutputPlan) -> None:
        self.plan = plan
        self.parser = ToolCallParser(plan.tool_names) if plan.tool_names and not plan.forced_call else None
        self.index = 0
        self.text_open = False
        self.calls = 0
        self._forced_buf: list[str] = []

    def feed(self, text: str) -> Iterator[Event]:
        if self.plan.forced_call:
            self._forced_buf.append(text)
            return
        if self.parser is None:
            yield from self._text(text)
            return
        for ev in self.parser.feed(text):
            yield from self._event(ev)

    def close(self) -> Iterator[Event]:
        if self.plan.forced_call:
            body = "".join(self._forced_buf)
            calls = parse_calls(body) or []
            if not calls:  # constrained decoding makes this unreachable unless max_tokens cut it short
                yield from self._text(body)
            for name, args in calls:
                yield from self._call(name, args)
        elif self.parser is not None:
            for ev in self.parser.close():
                yield from self._event(ev)
        if self.text_open:
            yield BlockStop(index=self.index)
            self.text_open = False

    def _event(self, ev: TextEvent | ToolCallEvent) -> Iterator[Event]:
        if isinstance(ev, ToolCallEvent):
            yield from self._call(ev.name, ev.arguments)
        else:
            yield from self._text(ev.text)

    def _text(self, text: str) -> Iterator[Event]:
        if not text:
            return
        if not self.text_open:
            yield BlockStart(index=self.index, block=Text(text=""))
            self.text_open = True
        yield TextDelta(index=self.index, text=text)

    def _call(self, name: str, arguments: str) -> Iterator[Event]:
        if self.text_open:
            yield BlockStop(index=self.index)
            self.text_open = False
            self.index += 1
        try:
            args = json.dumps(json.loads(arguments), ensure_ascii=False)
        except ValueError:
            args = arguments
        yield BlockStart(index=self.index, block=ToolCall(id=new_id("call_"), name=name, arguments=""))
        yield ToolArgsDelta(index=self.index, json=args)
        yield BlockStop(index=self.index)
        self.index += 1
        self.calls += 1
