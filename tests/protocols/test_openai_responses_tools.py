"""Responses tool types through a real gateway and real fake upstreams: namespace, custom and hosted tools
(what Codex sends on every request) reach each upstream protocol in a form it accepts, and the model's calls
come back to the client as the item types the client defined (namespaced function_call, custom_tool_call)."""

from __future__ import annotations

import json

import httpx
import openai
import pytest

from tests.gateway.conftest import matrix_config, matrix_upstreams
from tests.gateway_server import GatewayServer

UPSTREAMS = ["openai", "anthropic", "gemini", "ollama", "openai-responses"]
NAMESPACE = {
    "type": "namespace",
    "name": "multi_agent_v1",
    "description": "Sub-agents.",
    "tools": [
        {
            "type": "function",
            "name": "spawn_agent",
            "description": "Spawn one.",
            "strict": False,
            "parameters": {
                "type": "object",
                "properties": {"task": {"type": "string"}},
                "required": ["task"],
            },
        },
        {"type": "function", "name": "close_agent", "parameters": {"type": "object", "properties": {}}},
    ],
}
CUSTOM = {
    "type": "custom",
    "name": "apply_patch",
    "description": "Apply a patch.",
    "format": {"type": "grammar", "syntax": "lark", "definition": "start: /.+/"},
}
WEB = {"type": "web_search", "external_web_access": True}
CODEX_TOOLS = [
    NAMESPACE,
    {
        "type": "function",
        "name": "exec_command",
        "parameters": {"type": "object", "properties": {"cmd": {"type": "string"}}, "required": ["cmd"]},
    },
    CUSTOM,
    WEB,
]


@pytest.fixture(scope="module")
def upstreams():
    with matrix_upstreams() as fakes:
        yield fakes


@pytest.fixture(scope="module")
def gateway(upstreams):
    with GatewayServer(matrix_config({k: f.url for k, f in upstreams.items()})) as gw:
        yield gw


def post(gateway, body: dict) -> httpx.Response:
    return httpx.post(gateway.url + "/v1/responses", json=body, timeout=20)


def sent_tools(upstream: str, body: dict) -> list[str]:
    """The function names the upstream was offered, from its own wire format."""
    if upstream == "openai":
        return [t["function"]["name"] for t in body["tools"]]
    if upstream == "anthropic":
        return [t["name"] for t in body["tools"]]
    if upstream == "gemini":
        return [d["name"] for t in body["tools"] for d in t["functionDeclarations"]]
    return [t["function"]["name"] for t in body["tools"]]  # ollama


@pytest.mark.parametrize("upstream", ["openai", "anthropic", "gemini", "ollama"])
def test_codex_tools_become_functions_and_hosted_tools_are_dropped_visibly(gateway, upstreams, upstream):
    fake = upstreams[upstream]
    fake.reset()
    r = post(gateway, {"model": f"via-{upstream}", "input": "hi", "tools": CODEX_TOOLS, "store": False})
    assert r.status_code == 200, r.text
    assert r.headers["x-smolgate-dropped-tools"] == "web_search"
    names = sent_tools(upstream, fake.last.json)
    assert names == [
        "multi_agent_v1__spawn_agent",
        "multi_agent_v1__close_agent",
        "exec_command",
        "apply_patch",
    ]
    # the custom tool is a function with one string argument; its grammar is in the description
    text = json.dumps(fake.last.json)
    assert '"input"' in text and "lark grammar" in text and "web_search" not in text
    # the response object lists the tools as the client sent them
    assert [t["type"] for t in r.json()["tools"]] == ["namespace", "function", "custom", "web_search"]


def test_codex_tools_pass_through_to_a_responses_upstream(gateway, upstreams):
    fake = upstreams["openai"]
    fake.reset()
    r = post(
        gateway,
        {
            "model": "via-openai-responses",
            "input": "hi",
            "tools": CODEX_TOOLS,
            "tool_choice": {
                "type": "allowed_tools",
                "mode": "auto",
                "tools": [{"type": "function", "name": "exec_command"}],
            },
            "prompt_cache_key": "k1",
        },
    )
    assert r.status_code == 200, r.text
    assert "x-smolgate-dropped-tools" not in r.headers
    body = fake.last.json
    assert body["tools"][0] == {
        **NAMESPACE,
        "tools": [{**NAMESPACE["tools"][0]}, {"strict": False, **NAMESPACE["tools"][1]}],
    }
    assert body["tools"][2] == CUSTOM and body["tools"][3] == WEB
    assert body["tool_choice"]["type"] == "allowed_tools" and body["prompt_cache_key"] == "k1"


@pytest.mark.parametrize("upstream", UPSTREAMS)
@pytest.mark.parametrize("stream", [False, True])
def test_namespaced_call_comes_back_with_its_namespace(gateway, upstream, stream):
    """The fake model calls the first tool; the client sees a function_call in its namespace."""
    client = openai.OpenAI(base_url=gateway.url + "/v1", api_key="k", max_retries=0)
    kw = {
        "model": f"via-{upstream}",
        "input": "what is the weather",
        "tools": [NAMESPACE, WEB],
        "store": False,
    }
    if stream:
        with client.responses.stream(**kw) as s:
            out = s.get_final_response()
    else:
        out = client.responses.create(**kw)
    call = next(o for o in out.output if o.type == "function_call")
    assert (call.namespace, call.name, json.loads(call.arguments)) == (
        "multi_agent_v1",
        "spawn_agent",
        {"city": "Paris"},
    )


@pytest.mark.parametrize("upstream", UPSTREAMS)
@pytest.mark.parametrize("stream", [False, True])
def test_custom_tool_call_round_trip(gateway, upstreams, upstream, stream):
    """A custom tool: the model's call is a custom_tool_call with free-form input; the client's
    custom_tool_call_output goes back to the upstream as that protocol's tool result."""
    client = openai.OpenAI(base_url=gateway.url + "/v1", api_key="k", max_retries=0)
    kw = {"model": f"via-{upstream}", "input": "what is the weather", "tools": [CUSTOM], "store": False}
    if stream:
        with client.responses.stream(**kw) as s:
            events = [e.type for e in s]
            out = s.get_final_response()
        assert "response.custom_tool_call_input.done" in events
    else:
        out = client.responses.create(**kw)
    call = out.output[-1]
    assert call.type == "custom_tool_call" and call.name == "apply_patch" and call.input == "Paris"
    fake = upstreams[upstream]
    fake.reset()
    second = client.responses.create(
        model=f"via-{upstream}",
        tools=[CUSTOM],
        store=False,
        input=[
            {"role": "user", "content": "what is the weather"},
            {"type": "custom_tool_call", "call_id": call.call_id, "name": "apply_patch", "input": call.input},
            {"type": "custom_tool_call_output", "call_id": call.call_id, "output": "sunny"},
        ],
    )
    assert second.output_text == "The tool said: sunny"
    if upstream == "openai-responses":
        kinds = [i.get("type") for i in fake.last.json["input"]]
        assert kinds == ["message", "custom_tool_call", "custom_tool_call_output"]
        assert fake.last.json["input"][1]["input"] == "Paris"


def test_hosted_tool_items_sent_back_stay_in_place_for_a_responses_upstream(gateway, upstreams):
    fake = upstreams["openai"]
    ws = {
        "type": "web_search_call",
        "id": "ws_1",
        "status": "completed",
        "action": {"type": "search", "query": "weather"},
    }
    for upstream in ("openai-responses", "anthropic"):
        fake_up = upstreams[upstream]
        fake_up.reset()
        r = post(
            gateway,
            {
                "model": f"via-{upstream}",
                "tools": [WEB],
                "store": False,
                "input": [
                    {"role": "user", "content": "search"},
                    ws,
                    {
                        "type": "message",
                        "role": "assistant",
                        "content": [{"type": "output_text", "text": "found"}],
                    },
                    {"role": "user", "content": "thanks"},
                ],
            },
        )
        assert r.status_code == 200, r.text
        text = json.dumps(fake_up.last.json)
        assert ("ws_1" in text) == (upstream == "openai-responses")
    assert [i.get("type") for i in fake.requests[-1].json["input"]][:2] == ["message", "web_search_call"]


def test_required_choice_among_hosted_tools_only_is_not_forced_on_other_upstreams(gateway, upstreams):
    for upstream in ("gemini", "openai-responses"):
        fake = upstreams[upstream]
        fake.reset()
        r = post(
            gateway,
            {
                "model": f"via-{upstream}",
                "input": "hi",
                "tools": [WEB],
                "tool_choice": "required",
                "store": False,
            },
        )
        assert r.status_code == 200, r.text
        body = fake.last.json
        if upstream == "gemini":  # mode ANY with no function to call would be refused
            assert "tools" not in body and "toolConfig" not in body
        else:
            assert body["tools"] == [WEB] and body["tool_choice"] == "required"
