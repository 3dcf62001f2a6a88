"""litellm as a client library through the gateway, with each of its providers that speaks one of the gateway's
client protocols: `openai/` (Chat Completions), `litellm.aresponses` (Responses), `anthropic/`, `gemini/` (its
api_base is the API root with /v1beta, as for Google's) and `ollama_chat/` — against every upstream protocol."""

from __future__ import annotations

import json
import os

import pytest

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # never fetch the price list
import litellm

from tests.frameworks import cases as c
from tests.frameworks.stack import CLIENT_KEY, UPSTREAMS

pytestmark = pytest.mark.asyncio(loop_scope="session")
litellm.suppress_debug_info = True
KINDS = ("openai", "anthropic", "gemini", "ollama_chat")
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather for a city.",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    }
]
# litellm checks reasoning parameters against its model list; a user registers gateway aliases as reasoning models.
litellm.register_model(
    {
        f"{kind}/o3-{up}": {
            "litellm_provider": kind,
            "mode": "chat",
            "supports_reasoning": True,
            "supports_function_calling": True,
            "supports_response_schema": True,
            "supports_system_messages": True,
            "max_tokens": 8192,
            "max_input_tokens": 100000,
        }
        for kind in ("anthropic", "gemini")
        for up in UPSTREAMS
    }
)


@pytest.fixture(params=KINDS)
def kind(request) -> str:  # type: ignore[no-untyped-def]
    return request.param


def target(stack, kind: str, alias: str) -> dict:  # type: ignore[no-untyped-def]
    base = {
        "openai": stack.url + "/v1",
        "anthropic": stack.url,
        "gemini": stack.url + "/v1beta",
        "ollama_chat": stack.url,
    }[kind]
    return {"model": f"{kind}/{alias}", "api_base": base, "api_key": CLIENT_KEY, "num_retries": 0}


async def loop(stack, kind: str, alias: str, prompt: str, **kw) -> tuple[str, list[list[str]]]:  # type: ignore[no-untyped-def]
    messages: list = [{"role": "user", "content": prompt}]
    turns: list[list[str]] = []
    for _ in range(4):
        r = await litellm.acompletion(messages=messages, tools=TOOLS, **target(stack, kind, alias), **kw)
        msg = r.choices[0].message
        messages.append(msg.model_dump(exclude_none=True))
        if not msg.tool_calls:
            return msg.content, turns
        turns.append([json.loads(tc.function.arguments)["city"] for tc in msg.tool_calls])
        messages += [
            {
                "role": "tool",
                "tool_call_id": tc.id,
                "content": c.weather(json.loads(tc.function.arguments)["city"]),
            }
            for tc in msg.tool_calls
        ]
    raise AssertionError(f"no final answer after {turns}")


def said(text: str, *cities: str) -> bool:
    return text.startswith("The tool said: ") and all(f"sunny in {city}" in text for city in cities)


@pytest.mark.parametrize("upstream", UPSTREAMS)
async def test_text(stack, kind, upstream):
    r = await litellm.acompletion(
        messages=[{"role": "user", "content": c.TEXT_PROMPT}], **target(stack, kind, upstream)
    )
    assert c.echoed(r.choices[0].message.content)


@pytest.mark.parametrize("upstream", UPSTREAMS)
async def test_stream(stack, kind, upstream):
    r = await litellm.acompletion(
        messages=[{"role": "user", "content": c.TEXT_PROMPT}], stream=True, **target(stack, kind, upstream)
    )
    parts = [ch.choices[0].delta.content async for ch in r if ch.choices and ch.choices[0].delta.content]
    assert len(parts) > 1 and c.echoed("".join(parts))


@pytest.mark.parametrize("upstream", UPSTREAMS)
async def test_tools(stack, kind, upstream):
    text, turns = await loop(stack, kind, upstream, c.TOOL_PROMPT)
    assert turns == [["Paris"]] and said(text, "Paris")


@pytest.mark.parametrize("upstream", UPSTREAMS)
async def test_parallel(stack, kind, upstream):
    text, turns = await loop(stack, kind, upstream, c.PARALLEL_PROMPT)
    assert turns == [["Paris", "Tokyo"]] and said(text, "Paris", "Tokyo")


@pytest.mark.parametrize("upstream", UPSTREAMS)
async def test_reasoning(stack, kind, upstream):
    seen = c.Seen(stack, upstream)
    text, turns = await loop(stack, kind, "o3-" + upstream, c.TOOL_PROMPT, reasoning_effort="high")
    assert turns == [["Paris"]] and said(text, "Paris")
    assert seen.reasoning_asked()


@pytest.mark.parametrize("upstream", UPSTREAMS)
async def test_structured(stack, kind, upstream):
    r = await litellm.acompletion(
        messages=[{"role": "user", "content": c.JSON_PROMPT}],
        response_format=c.Weather,
        **target(stack, kind, "o3-" + upstream),
    )
    assert c.Weather.model_validate_json(r.choices[0].message.content) == c.WEATHER


@pytest.mark.parametrize("upstream", UPSTREAMS)
async def test_error(stack, kind, upstream):
    with pytest.raises(Exception) as info:
        await litellm.acompletion(
            messages=[{"role": "user", "content": c.TEXT_PROMPT}], **target(stack, kind, "bad-" + upstream)
        )
    # litellm maps a Gemini-shaped 502 to APIConnectionError (Google's API never answers 502); still a 5xx
    c.assert_upstream_failure(info.value, exact=kind != "gemini")


@pytest.mark.parametrize("upstream", UPSTREAMS)
async def test_responses_api(stack, upstream):
    """litellm's Responses client: text, streaming and a tool loop."""
    kw = {"model": f"openai/{upstream}", "api_base": stack.url + "/v1", "api_key": CLIENT_KEY}
    r = await litellm.aresponses(input=c.TEXT_PROMPT, **kw)
    assert c.echoed(r.output[-1].content[0].text)
    deltas = [
        e.delta
        async for e in await litellm.aresponses(input=c.TEXT_PROMPT, stream=True, **kw)
        if getattr(e, "type", "") == "response.output_text.delta"
    ]
    assert len(deltas) > 1 and c.echoed("".join(deltas))
    tools = [{"type": "function", **TOOLS[0]["function"]}]
    r = await litellm.aresponses(input=c.TOOL_PROMPT, tools=tools, **kw)
    call = next(o for o in r.output if o.type == "function_call")
    follow = [
        {"role": "user", "content": c.TOOL_PROMPT},
        {"type": "function_call", "call_id": call.call_id, "name": call.name, "arguments": call.arguments},
        {"type": "function_call_output", "call_id": call.call_id, "output": c.weather("Paris")},
    ]
    r = await litellm.aresponses(input=follow, tools=tools, **kw)
    assert r.output[-1].content[0].text == c.TOOL_ANSWER
