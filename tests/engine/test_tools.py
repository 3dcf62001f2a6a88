"""Tool calling for models without native tools: the prompt section, the streaming call parser (split at every
position, messy small-model output), and the history renderings."""

from __future__ import annotations

import itertools
import json

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smolgate.engine.tools import (
    Event,
    TextEvent,
    ToolCallEvent,
    ToolCallParser,
    ToolSpec,
    render_tool_call,
    render_tool_result,
    render_tools_prompt,
    tool_call_schema,
)

WEATHER = ToolSpec(
    "get_weather",
    "Current weather for a city",
    {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)
CLOCK = ToolSpec("get_time", "Current time", {"type": "object", "properties": {}})


def merged(events: list[Event]) -> list[Event]:
    """Adjacent text events joined: how a stream is split must not matter beyond that."""
    out: list[Event] = []
    for e in events:
        if isinstance(e, TextEvent) and out and isinstance(out[-1], TextEvent):
            out[-1] = TextEvent(out[-1].text + e.text)
        elif not (isinstance(e, TextEvent) and not e.text):
            out.append(e)
    return out


def parse(chunks: list[str], known: list[str] | None = None) -> list[Event]:
    p = ToolCallParser(known_names=known)
    events: list[Event] = []
    for c in chunks:
        events += p.feed(c)
    return merged(events + p.close())


def all_splits(text: str) -> list[list[str]]:
    """Every two-way split, every three-way split at positions i < j (small texts), and char by char."""
    splits = [[text[:i], text[i:]] for i in range(len(text) + 1)]
    step = max(1, len(text) // 12)
    splits += [
        [text[:i], text[i:j], text[j:]] for i in range(0, len(text), step) for j in range(i, len(text), step)
    ]
    return [*splits, list(text)]


def call(name: str, **args: object) -> ToolCallEvent:
    return ToolCallEvent(name, json.dumps(args, ensure_ascii=False))


MESSY: list[tuple[str, list[Event]]] = [
    ("plain answer, no tools", [TextEvent("plain answer, no tools")]),
    (
        '<tool_call>{"name": "get_weather", "arguments": {"city": "Paris"}}</tool_call>',
        [call("get_weather", city="Paris")],
    ),
    (  # prose around, whitespace and newlines inside the tag
        'Let me check.\n<tool_call>\n  {"name": "get_weather",\n "arguments": {"city": "Köln"}}\n</tool_call>\nDone.',
        [TextEvent("Let me check.\n"), call("get_weather", city="Köln"), TextEvent("\nDone.")],
    ),
    (  # a code fence around the JSON, "parameters" instead of "arguments"
        '<tool_call>\n```json\n{"name": "get_weather", "parameters": {"city": "Oslo"}}\n```\n</tool_call>',
        [call("get_weather", city="Oslo")],
    ),
    (  # a JSON list of calls, arguments as a JSON string, arguments missing
        '<tool_call>[{"name": "get_weather", "arguments": "{\\"city\\": \\"Rome\\"}"}, {"name": "get_time"}]</tool_call>',
        [call("get_weather", city="Rome"), call("get_time")],
    ),
    (  # two calls, each in its own tag; OpenAI's nested "function" shape
        (
            '<tool_call>{"name": "get_time", "arguments": {}}</tool_call>\n'
            '<tool_call>{"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Lima"}}}</tool_call>'
        ),
        [call("get_time"), TextEvent("\n"), call("get_weather", city="Lima")],
    ),
    (  # a stray extra closing brace (a frequent small-model slip)
        '<tool_call>{"name": "get_time", "arguments": {}}}</tool_call>',
        [call("get_time")],
    ),
    (  # missing closing tag at the end of the stream, JSON complete
        'Sure. <tool_call>{"name": "get_weather", "arguments": {"city": "Tokyo"}}',
        [TextEvent("Sure. "), call("get_weather", city="Tokyo")],
    ),
    (  # missing closing tag, the next call opens: the first one ended there
        '<tool_call>{"name": "get_time"}\n<tool_call>{"name": "get_weather", "arguments": {"city": "Bern"}}</tool_call>',
        [call("get_time"), call("get_weather", city="Bern")],
    ),
    (  # unparseable body: kept as text, with its tags, never lost
        '<tool_call>{"name": "get_weather", "arguments": {"city": </tool_call> ok',
        [TextEvent('<tool_call>{"name": "get_weather", "arguments": {"city": </tool_call> ok')],
    ),
    (  # truncated stream inside a call: text
        'a <tool_call>{"name": "get_wea',
        [TextEvent('a <tool_call>{"name": "get_wea')],
    ),
    (  # things that only look like the tag
        "1 < 2 and <tool> and <tool_call without bracket <tool_cal",
        [TextEvent("1 < 2 and <tool> and <tool_call without bracket <tool_cal")],
    ),
    (  # a name with the wrong case is fixed up against the known tools
        '<tool_call>{"name": "Get_Weather", "arguments": {"city": "Baku"}}</tool_call>',
        [call("get_weather", city="Baku")],
    ),
    (  # an unknown tool stays text
        '<tool_call>{"name": "rm_rf", "arguments": {}}</tool_call>',
        [TextEvent('<tool_call>{"name": "rm_rf", "arguments": {}}</tool_call>')],
    ),
]


@pytest.mark.parametrize("index", range(len(MESSY)))
def test_messy_outputs_at_every_split(index: int) -> None:
    text, expected = MESSY[index]
    for chunks in all_splits(text):
        assert parse(chunks, known=["get_weather", "get_time"]) == expected, chunks


def test_text_passes_through_at_once_and_only_a_possible_tag_is_held() -> None:
    p = ToolCallParser()
    assert p.feed("Hello") == [TextEvent("Hello")]
    assert p.feed(" wor<") == [TextEvent(" wor")]  # "<" may start <tool_call>
    assert p.feed("b>") == [TextEvent("<b>")]
    assert p.feed("x <tool_c") == [TextEvent("x ")]
    assert p.feed('all>{"name": "get_time"}') == []  # inside a call: buffered until it ends
    assert p.feed("</tool_call>!") == [ToolCallEvent("get_time", "{}"), TextEvent("!")]
    assert p.close() == []


pieces = [
    "a",
    " ",
    "\n",
    "<",
    ">",
    "/",
    "{",
    "}",
    '"',
    "<tool_",
    "<tool_call>",
    "</tool_call>",
    '{"name": "get_time"}',
]
texts = st.lists(st.sampled_from(pieces), max_size=12).map("".join)


@settings(max_examples=200, deadline=None)
@given(text=texts, cuts=st.lists(st.integers(0, 80), max_size=5))
def test_any_split_gives_the_same_events_and_text_is_never_lost(text: str, cuts: list[int]) -> None:
    bounds = sorted({min(c, len(text)) for c in cuts} | {0, len(text)})
    events = parse([text[a:b] for a, b in itertools.pairwise(bounds)])
    assert events == parse([text]) == parse(list(text))
    if not any(isinstance(e, ToolCallEvent) for e in events):
        assert "".join(e.text for e in events if isinstance(e, TextEvent)) == text


prose = st.text(st.sampled_from(list("ab <>/\n.")), max_size=12)
arg_values = st.one_of(st.integers(-5, 5), st.text('xyé"\\', max_size=4), st.booleans(), st.none())
calls = st.tuples(
    st.sampled_from(["get_weather", "get_time"]),
    st.dictionaries(st.text("kq", min_size=1, max_size=2), arg_values, max_size=2),
)


@settings(max_examples=150, deadline=None)
@given(
    parts=st.lists(st.tuples(prose, calls), max_size=3),
    tail=prose,
    cuts=st.lists(st.integers(0, 200), max_size=6),
)
def test_rendered_calls_round_trip_through_any_split(
    parts: list[tuple[str, tuple[str, dict[str, object]]]], tail: str, cuts: list[int]
) -> None:
    text = "".join(p + render_tool_call(name, json.dumps(args)) for p, (name, args) in parts) + tail
    expected: list[Event] = []
    for p, (name, args) in parts:
        expected += [TextEvent(p), ToolCallEvent(name, json.dumps(args, ensure_ascii=False))]
    bounds = sorted({min(c, len(text)) for c in cuts} | {0, len(text)})
    got = parse([text[a:b] for a, b in itertools.pairwise(bounds)])
    assert got == merged([*expected, TextEvent(tail)])


def test_tools_prompt() -> None:
    prompt = render_tools_prompt([WEATHER, CLOCK], None, None)
    assert '"name": "get_weather"' in prompt and "Current weather for a city" in prompt
    assert json.dumps(dict(WEATHER.parameters)) in prompt
    assert '<tool_call>{"name": "<function name>", "arguments": {' in prompt
    assert render_tools_prompt([WEATHER], "none", None) == ""
    assert "at least one" in render_tools_prompt([WEATHER, CLOCK], "required", None)
    forced = render_tools_prompt([WEATHER, CLOCK], "required", "get_time")
    assert '"get_time"' in forced and "get_weather" not in forced
    with pytest.raises(ValueError):
        render_tools_prompt([WEATHER], None, "nope")


def test_history_renderings_parse_back() -> None:
    turn = render_tool_call("get_weather", '{"city": "Paris"}')
    assert turn == '<tool_call>{"name": "get_weather", "arguments": {"city": "Paris"}}</tool_call>'
    assert parse([turn]) == [call("get_weather", city="Paris")]
    assert render_tool_result("get_weather", '{"temp": 21}') == (
        '<tool_response>{"name": "get_weather", "content": {"temp": 21}}</tool_response>'
    )
    assert (
        render_tool_result("get_time", "noon")
        == '<tool_response>{"name": "get_time", "content": "noon"}</tool_response>'
    )


def test_tool_call_schema() -> None:
    one = tool_call_schema([WEATHER, CLOCK], "get_weather")
    assert one["properties"]["name"] == {"const": "get_weather"} and one["required"] == ["name", "arguments"]
    assert len(tool_call_schema([WEATHER, CLOCK])["anyOf"]) == 2


def test_tool_call_schema_hoists_definitions() -> None:
    """pydantic-made parameters carry `$defs`; nested under the call schema their refs must still resolve."""
    person = {
        "$defs": {"P": {"type": "object", "properties": {"n": {"type": "string"}}}},
        "$ref": "#/$defs/P",
    }
    other = {
        "type": "object",
        "properties": {"p": {"$ref": "#/$defs/P"}},
        "$defs": {"P": {"type": "integer"}},
    }
    schema = tool_call_schema([ToolSpec("a", "", person), ToolSpec("b", "", other)])
    assert set(schema["$defs"]) == {"t0_P", "t1_P"}
    assert "$defs" in person and "$defs" in other  # the tools' own schemas are left alone
    resolver = jsonschema.Draft202012Validator(schema)
    assert resolver.is_valid({"name": "a", "arguments": {"n": "x"}})
    assert resolver.is_valid({"name": "b", "arguments": {"p": 3}})
    assert not resolver.is_valid({"name": "b", "arguments": {"p": "x"}})


def test_packaged_smollm2_template_has_no_tool_format() -> None:
    """Why we define our own format: the GGUF chat template renders only role and content."""
    from fixtures import gguf_reader

    template = gguf_reader().fields["tokenizer.chat_template"].contents()  # the packaged SmolLM2-135M
    assert "message['content']" in template
    assert "tool" not in template.lower()
