"""openai-agents (the OpenAI Agents SDK) through the gateway: its Responses model and its Chat Completions model,
each against every upstream protocol."""

from __future__ import annotations

import pytest
from agents import (
    Agent,
    ModelSettings,
    OpenAIChatCompletionsModel,
    OpenAIResponsesModel,
    Runner,
    function_tool,
    set_tracing_disabled,
)
from openai import APIError, AsyncOpenAI
from openai.types.shared import Reasoning

from tests.frameworks import cases as c
from tests.frameworks.stack import CLIENT_KEY

pytestmark = pytest.mark.asyncio(loop_scope="session")
set_tracing_disabled(True)
MODELS = {"responses": OpenAIResponsesModel, "chat": OpenAIChatCompletionsModel}


@pytest.fixture(params=list(MODELS))
def api(request) -> str:  # type: ignore[no-untyped-def]
    return request.param


def model(stack, api: str, alias: str):  # type: ignore[no-untyped-def]
    client = AsyncOpenAI(base_url=stack.url + "/v1", api_key=CLIENT_KEY, max_retries=0)
    return MODELS[api](model=alias, openai_client=client)


def weather_tool(calls: list[str]):  # type: ignore[no-untyped-def]
    @function_tool
    def get_weather(city: str) -> str:
        """Weather for a city."""
        calls.append(city)
        return c.weather(city)

    return get_weather


@pytest.mark.parametrize("upstream", c.UPSTREAMS)
async def test_text(stack, api, upstream):
    r = await Runner.run(
        Agent(name="a", instructions=c.INSTRUCTIONS, model=model(stack, api, upstream)), c.TEXT_PROMPT
    )
    assert c.echoed(r.final_output)


@pytest.mark.parametrize("upstream", c.UPSTREAMS)
async def test_stream(stack, api, upstream):
    r = Runner.run_streamed(Agent(name="a", model=model(stack, api, upstream)), c.TEXT_PROMPT)
    deltas = [
        e.data.delta
        async for e in r.stream_events()
        if e.type == "raw_response_event" and getattr(e.data, "type", "") == "response.output_text.delta"
    ]
    assert len(deltas) > 1 and c.echoed("".join(deltas)) and c.echoed(r.final_output)


@pytest.mark.parametrize("upstream", c.UPSTREAMS)
async def test_tools(stack, api, upstream):
    calls: list[str] = []
    agent = Agent(name="a", model=model(stack, api, upstream), tools=[weather_tool(calls)])
    r = await Runner.run(agent, c.TOOL_PROMPT)
    assert calls == ["Paris"] and r.final_output == c.TOOL_ANSWER


@pytest.mark.parametrize("upstream", c.UPSTREAMS)
async def test_parallel(stack, api, upstream):
    calls: list[str] = []
    agent = Agent(name="a", model=model(stack, api, upstream), tools=[weather_tool(calls)])
    r = await Runner.run(agent, c.PARALLEL_PROMPT)
    assert calls == ["Paris", "Tokyo"] and r.final_output == c.PARALLEL_ANSWER


@pytest.mark.parametrize("upstream", c.UPSTREAMS)
async def test_reasoning(stack, api, upstream):
    calls: list[str] = []
    seen = c.Seen(stack, upstream)
    agent = Agent(
        name="a",
        model=model(stack, api, upstream),
        tools=[weather_tool(calls)],
        model_settings=ModelSettings(reasoning=Reasoning(effort="high", summary="auto")),
    )
    r = Runner.run_streamed(agent, c.TOOL_PROMPT)
    async for _ in r.stream_events():
        pass
    assert calls == ["Paris"] and r.final_output == c.TOOL_ANSWER
    assert seen.reasoning_asked()


@pytest.mark.parametrize("upstream", c.UPSTREAMS)
async def test_structured(stack, api, upstream):
    agent = Agent(name="a", model=model(stack, api, upstream), output_type=c.Weather)
    r = await Runner.run(agent, c.JSON_PROMPT)
    assert r.final_output == c.WEATHER


@pytest.mark.parametrize("upstream", c.UPSTREAMS)
async def test_error(stack, api, upstream):
    with pytest.raises(APIError) as info:
        await Runner.run(Agent(name="a", model=model(stack, api, "bad-" + upstream)), c.TEXT_PROMPT)
    c.assert_upstream_failure(info.value)


@pytest.mark.parametrize("upstream", c.UPSTREAMS)
async def test_stream_error(stack, api, upstream):
    r = Runner.run_streamed(Agent(name="a", model=model(stack, api, upstream)), "FAIL_MIDSTREAM please")
    with pytest.raises(Exception) as info:
        async for _ in r.stream_events():
            pass
    assert "Traceback" not in str(info.value)
