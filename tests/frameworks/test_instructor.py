"""instructor through the gateway: structured output in its tool-calling and schema modes for the OpenAI (Chat and
Responses), Anthropic and Google GenAI clients, whole and streamed as partial objects, against every upstream.
Its JSON mode (schema in the prompt, JSON mode on) runs too: the fake model follows a schema the prompt spells out."""

from __future__ import annotations

import instructor
import pytest
from anthropic import AsyncAnthropic
from google import genai
from openai import AsyncOpenAI

from tests.frameworks import cases as c
from tests.frameworks.stack import CLIENT_KEY

pytestmark = pytest.mark.asyncio(loop_scope="session")
MODES = {
    "openai": ["TOOLS", "JSON_SCHEMA", "JSON", "RESPONSES_TOOLS"],
    "anthropic": ["ANTHROPIC_TOOLS"],
    "genai": ["GENAI_TOOLS", "GENAI_STRUCTURED_OUTPUTS"],
}
CELLS = [(client, mode) for client, modes in MODES.items() for mode in modes]


def make(stack, client: str, mode: str, alias: str):  # type: ignore[no-untyped-def]
    m = getattr(instructor.Mode, mode)
    messages = [{"role": "user", "content": c.JSON_PROMPT}]
    if client == "openai":
        sdk = AsyncOpenAI(base_url=stack.url + "/v1", api_key=CLIENT_KEY, max_retries=0)
        return instructor.from_openai(sdk, mode=m), {"model": alias, "messages": messages}
    if client == "anthropic":
        sdk = AsyncAnthropic(base_url=stack.url, api_key=CLIENT_KEY, max_retries=0)
        return instructor.from_anthropic(sdk, mode=m), {
            "model": alias,
            "max_tokens": 256,
            "messages": messages,
        }
    sdk = genai.Client(api_key=CLIENT_KEY, http_options={"base_url": stack.url})
    return instructor.from_genai(sdk, mode=m, use_async=True), {"model": alias, "messages": messages}


def prompt_only(mode: str, upstream: str) -> bool:
    """JSON mode has no Anthropic equivalent: the schema reaches the model only in the prompt, which a real model
    follows and the scripted fake does not read (docs/conversion.md, Anthropic)."""
    return mode == "JSON" and upstream == "anthropic"


STRUCTURED = [(client, mode, up) for client, mode in CELLS for up in c.UPSTREAMS if not prompt_only(mode, up)]


@pytest.mark.parametrize(("client", "mode", "upstream"), STRUCTURED)
async def test_structured(stack, client, mode, upstream):
    inst, kw = make(stack, client, mode, upstream)
    got = await inst.create(response_model=c.Weather, max_retries=1, **kw)
    assert got.model_dump() == c.WEATHER.model_dump()  # instructor returns its own subclass


@pytest.mark.parametrize(("client", "mode", "upstream"), STRUCTURED)
async def test_partial_stream(stack, client, mode, upstream):
    inst, kw = make(stack, client, mode, upstream)
    parts = [p async for p in inst.create_partial(response_model=c.Weather, max_retries=1, **kw)]
    assert parts and parts[-1].model_dump() == c.WEATHER.model_dump()


@pytest.mark.parametrize("upstream", c.UPSTREAMS)
@pytest.mark.parametrize("client", list(MODES))
async def test_error(stack, client, upstream):
    inst, kw = make(stack, client, MODES[client][0], "bad-" + upstream)
    with pytest.raises(Exception) as info:
        await inst.create(response_model=c.Weather, max_retries=1, **kw)
    c.assert_upstream_failure(info.value)
