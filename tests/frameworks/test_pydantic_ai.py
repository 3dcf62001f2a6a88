"""pydantic-ai through the gateway: its OpenAI Chat, OpenAI Responses, Anthropic and Google models, each against
every upstream protocol. Structured output uses pydantic-ai's default (an output tool it forces the model to call)."""

from __future__ import annotations

import pytest
from anthropic import AsyncAnthropic
from openai import AsyncOpenAI
from pydantic_ai import Agent
from pydantic_ai.exceptions import ModelHTTPError
from pydantic_ai.models.anthropic import AnthropicModel
from pydantic_ai.models.google import GoogleModel
from pydantic_ai.models.openai import OpenAIChatModel, OpenAIResponsesModel
from pydantic_ai.providers.anthropic import AnthropicProvider
from pydantic_ai.providers.google import GoogleProvider
from pydantic_ai.providers.openai import OpenAIProvider

from tests.frameworks import cases as c
from tests.frameworks.stack import CLIENT_KEY

pytestmark = pytest.mark.asyncio(loop_scope="session")
KINDS = ("chat", "responses", "anthropic", "google")


@pytest.fixture(params=KINDS)
def kind(request) -> str:  # type: ignore[no-untyped-def]
    return request.param


def model(stack, kind: str, alias: str):  # type: ignore[no-untyped-def]
    if kind in ("chat", "responses"):  # SDK clients without retries: an error case fails at once
        provider = OpenAIProvider(
            openai_client=AsyncOpenAI(base_url=stack.url + "/v1", api_key=CLIENT_KEY, max_retries=0)
        )
        return (OpenAIChatModel if kind == "chat" else OpenAIResponsesModel)(alias, provider=provider)
    if kind == "anthropic":
        sdk = AsyncAnthropic(base_url=stack.url, api_key=CLIENT_KEY, max_retries=0)
        return AnthropicModel(alias, provider=AnthropicProvider(anthropic_client=sdk))
    return GoogleModel(alias, provider=GoogleProvider(api_key=CLIENT_KEY, base_url=stack.url))


def weather_tool(calls: list[str]):  # type: ignore[no-untyped-def]
    def get_weather(city: str) -> str:
        """Weather for a city."""
        calls.append(city)
        return c.weather(city)

    return get_weather


def said(text: str, *cities: str) -> bool:
    """The model saw each tool result (Google's client wraps a result as {"return_value": …})."""
    return text.startswith("The tool said: ") and all(f"sunny in {city}" in text for city in cities)


@pytest.mark.parametrize("upstream", c.UPSTREAMS)
async def test_text(stack, kind, upstream):
    r = await Agent(model(stack, kind, upstream), instructions=c.INSTRUCTIONS).run(c.TEXT_PROMPT)
    assert c.echoed(r.output) and "system=be brief" in r.output


@pytest.mark.parametrize("upstream", c.UPSTREAMS)
async def test_stream(stack, kind, upstream):
    async with Agent(model(stack, kind, upstream)).run_stream(c.TEXT_PROMPT) as r:
        parts = [d async for d in r.stream_text(delta=True, debounce_by=None)]
    assert len(parts) > 1 and c.echoed("".join(parts))


@pytest.mark.parametrize("upstream", c.UPSTREAMS)
async def test_tools(stack, kind, upstream):
    calls: list[str] = []
    r = await Agent(model(stack, kind, upstream), tools=[weather_tool(calls)]).run(c.TOOL_PROMPT)
    assert calls == ["Paris"] and said(r.output, "Paris")


@pytest.mark.parametrize("upstream", c.UPSTREAMS)
async def test_parallel(stack, kind, upstream):
    calls: list[str] = []
    r = await Agent(model(stack, kind, upstream), tools=[weather_tool(calls)]).run(c.PARALLEL_PROMPT)
    assert sorted(calls) == ["Paris", "Tokyo"] and said(r.output, "Paris", "Tokyo")


@pytest.mark.parametrize("upstream", c.UPSTREAMS)
async def test_reasoning(stack, kind, upstream):
    """pydantic-ai's own switch (`thinking`), streamed, with a tool loop: the reasoning setting reaches the
    upstream on every turn, and signed thinking / thought signatures survive the loop (the fakes refuse
    otherwise). OpenAI models get it only under a reasoning model's name (pydantic-ai decides by name)."""
    calls: list[str] = []
    seen = c.Seen(stack, upstream)
    agent = Agent(
        model(stack, kind, "o3-" + upstream), tools=[weather_tool(calls)], model_settings={"thinking": "high"}
    )
    async with agent.run_stream(c.TOOL_PROMPT) as r:
        text = "".join([d async for d in r.stream_text(delta=True, debounce_by=None)])
    assert calls == ["Paris"] and said(text, "Paris")
    assert seen.reasoning_asked()


@pytest.mark.parametrize("upstream", c.UPSTREAMS)
async def test_structured(stack, kind, upstream):
    calls: list[str] = []
    r = await Agent(model(stack, kind, upstream), output_type=c.Weather, tools=[weather_tool(calls)]).run(
        c.TOOL_PROMPT
    )
    assert calls == ["Paris"] and r.output == c.WEATHER


@pytest.mark.parametrize("upstream", c.UPSTREAMS)
async def test_error(stack, kind, upstream):
    with pytest.raises(ModelHTTPError) as info:
        await Agent(model(stack, kind, "bad-" + upstream)).run(c.TEXT_PROMPT)
    c.assert_upstream_failure(info.value)


@pytest.mark.parametrize("upstream", c.UPSTREAMS)
async def test_stream_error(stack, kind, upstream):
    with pytest.raises(Exception) as info:
        async with Agent(model(stack, kind, upstream)).run_stream("FAIL_MIDSTREAM please") as r:
            async for _ in r.stream_text(delta=True, debounce_by=None):
                pass
    assert "Traceback" not in str(info.value)
