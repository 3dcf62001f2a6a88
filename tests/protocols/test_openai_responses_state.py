"""Responses state through a real gateway: store (default true), previous_response_id, item_reference,
GET / DELETE /v1/responses/{id} and /input_items, scoped to the client key; for every upstream protocol."""

from __future__ import annotations

import httpx
import openai
import pytest

from tests.gateway.conftest import matrix_config, matrix_upstreams
from tests.gateway_server import GatewayServer

UPSTREAMS = ["openai", "anthropic", "gemini", "ollama", "openai-responses"]
KEYS = "keys:\n  - {key: sk-client-a, name: a}\n  - {key: sk-client-b, name: b}\n"
TOOL = {
    "type": "function",
    "name": "get_weather",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


@pytest.fixture(scope="module")
def upstreams():
    with matrix_upstreams() as fakes:
        yield fakes


@pytest.fixture(scope="module")
def gateway(upstreams):
    with GatewayServer(matrix_config({k: f.url for k, f in upstreams.items()}, KEYS)) as gw:
        yield gw


def client(gateway, key: str = "sk-client-a") -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.url + "/v1", api_key=key, max_retries=0)


@pytest.mark.parametrize("upstream", UPSTREAMS)
@pytest.mark.parametrize("stream", [False, True])
def test_previous_response_id_continues_the_conversation(gateway, upstream, stream):
    c = client(gateway)
    first = c.responses.create(model=f"via-{upstream}", input="hello", instructions="be brief")
    assert first.store is True and first.id.startswith("resp_") and len(first.id) == 53
    kw = {"model": f"via-{upstream}", "input": "again", "previous_response_id": first.id}
    if stream:
        with c.responses.stream(**kw) as s:
            second = s.get_final_response()
    else:
        second = c.responses.create(**kw)
    # the fake model reports how many turns it saw: user, assistant, user; instructions are not carried over
    assert "turns=3" in second.output_text and "system=none" in second.output_text
    assert second.previous_response_id == first.id
    third = c.responses.create(model=f"via-{upstream}", input="more", previous_response_id=second.id)
    assert "turns=5" in third.output_text


def test_retrieve_delete_and_input_items(gateway):
    c = client(gateway)
    first = c.responses.create(model="via-anthropic", input="one")
    second = c.responses.create(
        model="via-anthropic",
        previous_response_id=first.id,
        input=[{"role": "user", "content": "two"}, {"role": "user", "content": "three"}],
    )
    got = c.responses.retrieve(second.id)
    assert got.id == second.id and got.output_text == second.output_text and got.status == "completed"
    items = c.responses.input_items.list(second.id)  # newest first by default, 20 per page
    texts = [i.content[0].text for i in items.data]
    assert texts == ["three", "two", first.output_text, "one"]
    assert all(i.id for i in items.data)
    page = c.responses.input_items.list(second.id, limit=2, order="asc")
    assert [i.content[0].text for i in page.data] == ["one", first.output_text] and page.has_more
    assert page.first_id == page.data[0].id and page.last_id == page.data[1].id
    rest = c.responses.input_items.list(second.id, limit=2, order="asc", after=page.last_id)
    assert [i.content[0].text for i in rest.data] == ["two", "three"] and not rest.has_more
    assert [
        i.content[0].text for i in c.responses.input_items.list(second.id, limit=10)
    ] == texts  # auto-paging
    r = httpx.delete(
        f"{gateway.url}/v1/responses/{second.id}", headers={"authorization": "Bearer sk-client-a"}
    )
    assert r.status_code == 200 and r.json() == {
        "id": second.id,
        "object": "response.deleted",
        "deleted": True,
    }
    with pytest.raises(openai.NotFoundError):
        c.responses.retrieve(second.id)
    with pytest.raises(openai.NotFoundError) as info:
        c.responses.create(model="via-anthropic", input="x", previous_response_id=second.id)
    assert info.value.body["param"] == "previous_response_id"
    c.responses.retrieve(first.id)  # its ancestor is still there


def test_store_false_keeps_nothing(gateway):
    c = client(gateway)
    r = c.responses.create(model="via-gemini", input="hi", store=False)
    assert r.store is False
    with pytest.raises(openai.NotFoundError):
        c.responses.retrieve(r.id)


def test_stored_responses_belong_to_the_key_that_made_them(gateway):
    mine = client(gateway, "sk-client-a").responses.create(model="via-ollama", input="secret plan")
    other = client(gateway, "sk-client-b")
    with pytest.raises(openai.NotFoundError):
        other.responses.retrieve(mine.id)
    with pytest.raises(openai.NotFoundError):
        other.responses.create(model="via-ollama", input="x", previous_response_id=mine.id)
    with pytest.raises(openai.NotFoundError):
        other.responses.input_items.list(mine.id)
    r = httpx.get(f"{gateway.url}/v1/responses/{mine.id}")  # no key: the same 401 as every other route
    assert r.status_code == 401


@pytest.mark.parametrize("bad", ["resp_../../etc", "x" * 200, "resp_a b"])
def test_ids_are_validated_before_use(gateway, bad):
    h = {"authorization": "Bearer sk-client-a"}
    r = httpx.get(f"{gateway.url}/v1/responses/{httpx.URL(bad).path if '/' in bad else bad}", headers=h)
    assert r.status_code in (400, 404)
    r = httpx.post(
        f"{gateway.url}/v1/responses",
        headers=h,
        json={"model": "via-openai", "input": "x", "previous_response_id": bad},
    )
    assert r.status_code == 400 and r.json()["error"]["param"] == "previous_response_id"


@pytest.mark.parametrize("upstream", UPSTREAMS)
def test_item_reference_to_minted_ids_resolves(gateway, upstreams, upstream):
    """The Vercel AI SDK with store: true sends earlier output items back as item_reference."""
    c = client(gateway)
    first = c.responses.create(model=f"via-{upstream}", input="what is the weather", tools=[TOOL])
    call = first.output[-1]
    assert call.type == "function_call" and call.id.startswith("fc_")
    second = c.responses.create(
        model=f"via-{upstream}",
        tools=[TOOL],
        input=[
            {"role": "user", "content": "what is the weather"},
            {"type": "item_reference", "id": call.id},
            {"type": "function_call_output", "call_id": call.call_id, "output": "sunny"},
        ],
    )
    assert second.output_text == "The tool said: sunny"
    with pytest.raises(openai.NotFoundError) as info:
        c.responses.create(model=f"via-{upstream}", input=[{"type": "item_reference", "id": "fc_unknown"}])
    assert info.value.body["param"] == "input[0].id"


def test_item_reference_already_in_the_previous_response_is_not_duplicated(gateway, upstreams):
    c = client(gateway)
    first = c.responses.create(model="via-openai-responses", input="what is the weather", tools=[TOOL])
    call = first.output[-1]
    upstreams["openai"].reset()
    second = c.responses.create(
        model="via-openai-responses",
        tools=[TOOL],
        previous_response_id=first.id,
        input=[
            {"type": "item_reference", "id": call.id},
            {"type": "function_call_output", "call_id": call.call_id, "output": "sunny"},
        ],
    )
    assert second.output_text == "The tool said: sunny"
    kinds = [i.get("type", "message") for i in upstreams["openai"].last.json["input"]]
    assert kinds == ["message", "function_call", "function_call_output"]


def test_bare_id_and_response_id_references_resolve(gateway):
    """ItemReference's `type` is optional in the API; a reference may also name a whole stored response."""
    c = client(gateway)
    first = c.responses.create(model="via-gemini", input="what is the weather", tools=[TOOL])
    call = first.output[-1]
    for ref in ({"id": call.id}, {"type": "item_reference", "id": first.id}):
        second = c.responses.create(
            model="via-gemini",
            tools=[TOOL],
            input=[
                {"role": "user", "content": "what is the weather"},
                ref,
                {"type": "function_call_output", "call_id": call.call_id, "output": "sunny"},
            ],
        )
        assert second.output_text == "The tool said: sunny"
