"""LangChain chat models through the gateway: ChatOpenAI (Chat Completions and `use_responses_api`), ChatAnthropic
and ChatGoogleGenerativeAI, each against every upstream protocol. The tool loop is LangChain's usual one:
`bind_tools`, run the calls, send `ToolMessage`s back with the model's own message."""

from __future__ import annotations

import pytest
from langchain_anthropic import ChatAnthropic
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_core.tools import tool
from langchain_google_genai import ChatGoogleGenerativeAI
from langchain_openai import ChatOpenAI

from tests.frameworks import cases as c
from tests.frameworks.stack import CLIENT_KEY

pytestmark = pytest.mark.asyncio(loop_scope="session")
KINDS = ("chat", "responses", "anthropic", "google")
# Each client's own reasoning switch.
THINKING = {
    "chat": {"reasoning_effort": "high"},
    "responses": {"reasoning": {"effort": "high", "summary": "auto"}},
    "anthropic": {"thinking": {"type": "enabled", "budget_tokens": 2048}, "max_tokens": 4096},
    "google": {"thinking_budget": 2048, "include_thoughts": True},
}


@pytest.fixture(params=KINDS)
def kind(request) -> str:  # type: ignore[no-untyped-def]
    return request.param


def model(stack, kind: str, alias: str, **kw):  # type: ignore[no-untyped-def]
    if kind in ("chat", "responses"):
        return ChatOpenAI(
            model=alias,
            base_url=stack.url + "/v1",
            api_key=CLIENT_KEY,
            max_retries=0,
            use_responses_api=kind == "responses",
            **kw,
        )
    if kind == "anthropic":
        return ChatAnthropic(model=alias, base_url=stack.url, api_key=CLIENT_KEY, max_retries=0, **kw)
    return ChatGoogleGenerativeAI(
        model=alias, google_api_key=CLIENT_KEY, base_url=stack.url, max_retries=0, **kw
    )


@tool
def get_weather(city: str) -> str:
    """Weather for a city."""
    return c.weather(city)


async def loop(chat, prompt: str) -> tuple[str, list[list[str]]]:  # type: ignore[no-untyped-def]
    """LangChain's tool loop; returns the final text and the cities asked for in each model turn."""
    bound = chat.bind_tools([get_weather])
    messages: list = [HumanMessage(prompt)]
    turns: list[list[str]] = []
    for _ in range(4):
        ai: AIMessage = await bound.ainvoke(messages)
        messages.append(ai)
        if not ai.tool_calls:
            return ai.text, turns
        turns.append([tc["args"]["city"] for tc in ai.tool_calls])
        messages += [
            ToolMessage(get_weather.invoke(tc["args"]), tool_call_id=tc["id"]) for tc in ai.tool_calls
        ]
    raise AssertionError(f"no final answer after {turns}")


@pytest.mark.parametrize("upstream", c.UPSTREAMS)
async def test_text(stack, kind, upstream):
    ai = await model(stack, kind, upstream).ainvoke(
        [SystemMessage(c.INSTRUCTIONS), HumanMessage(c.TEXT_PROMPT)]
    )
    assert c.echoed(ai.text) and "system=be brief" in ai.text


@pytest.mark.parametrize("upstream", c.UPSTREAMS)
async def test_stream(stack, kind, upstream):
    parts = [chunk.text async for chunk in model(stack, kind, upstream).astream(c.TEXT_PROMPT)]
    assert len([p for p in parts if p]) > 1 and c.echoed("".join(parts))


@pytest.mark.parametrize("upstream", c.UPSTREAMS)
async def test_tools(stack, kind, upstream):
    text, turns = await loop(model(stack, kind, upstream), c.TOOL_PROMPT)
    assert turns == [["Paris"]] and text == c.TOOL_ANSWER


@pytest.mark.parametrize("upstream", c.UPSTREAMS)
async def test_parallel(stack, kind, upstream):
    text, turns = await loop(model(stack, kind, upstream), c.PARALLEL_PROMPT)
    assert turns == [["Paris", "Tokyo"]] and text == c.PARALLEL_ANSWER


@pytest.mark.parametrize("upstream", c.UPSTREAMS)
async def test_reasoning(stack, kind, upstream):
    seen = c.Seen(stack, upstream)
    text, turns = await loop(model(stack, kind, upstream, **THINKING[kind]), c.TOOL_PROMPT)
    assert turns == [["Paris"]] and text == c.TOOL_ANSWER
    assert seen.reasoning_asked()


@pytest.mark.parametrize("method", ["default", "function_calling"])
@pytest.mark.parametrize("upstream", c.UPSTREAMS)
async def test_structured(stack, kind, upstream, method):
    chat = model(stack, kind, upstream)
    structured = chat.with_structured_output(c.Weather, **({} if method == "default" else {"method": method}))
    assert await structured.ainvoke(c.JSON_PROMPT) == c.WEATHER


@pytest.mark.parametrize("upstream", c.UPSTREAMS)
async def test_error(stack, kind, upstream):
    with pytest.raises(Exception) as info:
        await model(stack, kind, "bad-" + upstream).ainvoke(c.TEXT_PROMPT)
    c.assert_upstream_failure(info.value)


@pytest.mark.parametrize("upstream", c.UPSTREAMS)
async def test_stream_error(stack, kind, upstream):
    with pytest.raises(Exception) as info:
        async for _ in model(stack, kind, upstream).astream("FAIL_MIDSTREAM please"):
            pass
    assert "Traceback" not in str(info.value)
