"""Tool calls and JSON output from a local model that has neither natively.

A tiny *random* SmolVLM is the hardest case: left alone it emits noise, so a well-formed tool call or a
schema-valid JSON document can only come from the gateway's constrained decoding.
"""

from __future__ import annotations

import json

import anthropic
import httpx
import jsonschema
import openai
import pytest

from smolgate.canonical import (
    BlockStart,
    Request,
    ResponseFormat,
    TextDelta,
    Tool,
    ToolArgsDelta,
    ToolCall,
    ToolChoice,
)
from smolgate.providers.local_tools import OutputReader, plan_output
from tests.gateway.clients import CLIENTS, WEATHER_SCHEMA, Ask

PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 12},
        "age": {"type": "integer"},
        "tags": {"type": "array", "items": {"enum": ["a", "b"]}, "maxItems": 2},
    },
    "required": ["name", "age", "tags"],
    "additionalProperties": False,
}


# ---------------------------------------------------------------- unit: reading model text into blocks


def _events(plan, chunks):  # type: ignore[no-untyped-def]
    r = OutputReader(plan)
    out = [ev for c in chunks for ev in r.feed(c)]
    return out + list(r.close()), r


def test_auto_mode_splits_text_and_calls_in_order():
    req = Request(model="m", messages=[], tools=[Tool(name="get_weather", parameters=WEATHER_SCHEMA)])
    text = (
        'Let me check. <tool_call>{"name": "get_weather", "arguments": {"city": "Paris"}}</tool_call> Done.'
    )
    for cut in range(1, len(text)):
        events, reader = _events(plan_output(req), [text[:cut], text[cut:]])
        starts = [e.block for e in events if isinstance(e, BlockStart)]
        assert [type(b) for b in starts] == [type(starts[0]), ToolCall, type(starts[0])]
        assert "".join(e.text for e in events if isinstance(e, TextDelta)) == "Let me check.  Done."
        args = "".join(e.json for e in events if isinstance(e, ToolArgsDelta))
        assert json.loads(args) == {"city": "Paris"} and reader.calls == 1


def test_plan_rejects_a_forced_tool_that_does_not_exist():
    req = Request(
        model="m", messages=[], tools=[Tool(name="a")], tool_choice=ToolChoice(mode="tool", name="b")
    )
    with pytest.raises(Exception, match="not among the tools"):
        plan_output(req)


def test_plan_constrains_json_modes():
    req = Request(model="m", messages=[], response_format=ResponseFormat(type="json_schema", schema=PERSON))
    plan = plan_output(req)
    assert plan.constrained and plan.schema == PERSON and not plan.forced_call


# ---------------------------------------------------------------- end to end through every SDK


# Ollama's API has no tool_choice, so a required call is not expressible there.
FORCING_CLIENTS = [c for c in CLIENTS if c.name != "ollama"]


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize("client_cls", FORCING_CLIENTS, ids=[c.name for c in FORCING_CLIENTS])
def test_required_tool_call_is_always_well_formed(vlm_gateway, client_cls, stream):
    c = client_cls(vlm_gateway.url)
    r = _ask_required(c, stream)
    assert r.stop == "tool" and len(r.tool_calls) >= 1
    _, name, args = r.tool_calls[0]
    assert name == "get_weather"
    jsonschema.validate(args, WEATHER_SCHEMA)


def _ask_required(c, stream):  # type: ignore[no-untyped-def]
    """The adapters' `ask` with tool_choice forced, per SDK."""
    ask = Ask(turns=[("user", "weather in Paris?")], tools=True, max_tokens=60, stream=stream)
    name = c.name
    orig = {}
    if name == "openai":
        orig = c.sdk.chat.completions.create
        c.sdk.chat.completions.create = lambda **kw: orig(**kw, tool_choice="required")  # type: ignore[method-assign]
    elif name == "openai-responses":
        orig = c.sdk.responses.create
        c.sdk.responses.create = lambda **kw: orig(**kw, tool_choice="required")  # type: ignore[method-assign]
    elif name == "anthropic":
        orig_create, orig_stream = c.sdk.messages.create, c.sdk.messages.stream
        c.sdk.messages.create = lambda **kw: orig_create(**kw, tool_choice={"type": "any"})  # type: ignore[method-assign]
        c.sdk.messages.stream = lambda **kw: orig_stream(**kw, tool_choice={"type": "any"})  # type: ignore[method-assign]
    elif name == "gemini":
        t = c.types
        orig_gc, orig_gs = c.sdk.models.generate_content, c.sdk.models.generate_content_stream

        def force(kw):  # type: ignore[no-untyped-def]
            kw["config"].tool_config = t.ToolConfig(
                function_calling_config=t.FunctionCallingConfig(mode="ANY")
            )
            return kw

        c.sdk.models.generate_content = lambda **kw: orig_gc(**force(kw))  # type: ignore[method-assign]
        c.sdk.models.generate_content_stream = lambda **kw: orig_gs(**force(kw))  # type: ignore[method-assign]
    return c.ask("vlm", ask)


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_openai_json_schema_output_parses_and_validates(vlm_gateway, stream):
    oc = openai.OpenAI(base_url=vlm_gateway.url + "/v1", api_key="k", max_retries=0)
    kw = dict(
        model="vlm",
        max_tokens=80,
        messages=[{"role": "user", "content": "A person, please."}],
        response_format={"type": "json_schema", "json_schema": {"name": "person", "schema": PERSON}},
    )
    if stream:
        text = "".join(
            ch.choices[0].delta.content or ""
            for ch in oc.chat.completions.create(**kw, stream=True)
            if ch.choices
        )
    else:
        text = oc.chat.completions.create(**kw).choices[0].message.content
    jsonschema.validate(json.loads(text), PERSON)


def test_json_mode_in_every_other_protocol(vlm_gateway):
    # OpenAI json_object
    oc = openai.OpenAI(base_url=vlm_gateway.url + "/v1", api_key="k", max_retries=0)
    text = (
        oc.chat.completions.create(
            model="vlm",
            max_tokens=40,
            response_format={"type": "json_object"},
            messages=[{"role": "user", "content": "json please"}],
        )
        .choices[0]
        .message.content
    )
    assert isinstance(json.loads(text), dict)
    # Responses text.format
    r = oc.responses.create(
        model="vlm",
        input="a person",
        max_output_tokens=80,
        text={"format": {"type": "json_schema", "name": "p", "schema": PERSON}},
    )
    jsonschema.validate(json.loads(r.output_text), PERSON)
    # Gemini responseSchema (OpenAPI subset) / responseJsonSchema
    g = httpx.post(
        vlm_gateway.url + "/v1beta/models/vlm:generateContent",
        timeout=120,
        json={
            "contents": [{"role": "user", "parts": [{"text": "a person"}]}],
            "generationConfig": {
                "maxOutputTokens": 80,
                "responseMimeType": "application/json",
                "responseJsonSchema": PERSON,
            },
        },
    )
    jsonschema.validate(json.loads(g.json()["candidates"][0]["content"]["parts"][0]["text"]), PERSON)
    # Ollama format
    o = httpx.post(
        vlm_gateway.url + "/api/chat",
        timeout=120,
        json={
            "model": "vlm",
            "stream": False,
            "format": PERSON,
            "options": {"num_predict": 80},
            "messages": [{"role": "user", "content": "a person"}],
        },
    )
    jsonschema.validate(json.loads(o.json()["message"]["content"]), PERSON)
    # Anthropic output_config.format
    ac = anthropic.Anthropic(base_url=vlm_gateway.url, api_key="k", max_retries=0)
    m = ac.messages.create(
        model="vlm",
        max_tokens=80,
        messages=[{"role": "user", "content": "a person"}],
        extra_body={"output_config": {"format": {"type": "json_schema", "schema": PERSON}}},
    )
    jsonschema.validate(json.loads(m.content[0].text), PERSON)
