"""A forced tool call toward an Ollama upstream (which has no tool_choice) comes back as a tool call: the gateway
constrains the answer with a JSON-schema `format` describing the call and turns the JSON back into the call."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.fakes.ollama_upstream import OllamaUpstream
from tests.gateway_server import GatewayServer

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
    },
    {
        "type": "function",
        "function": {
            "name": "final_result",
            "description": "The answer.",
            "parameters": {
                "type": "object",
                "properties": {"temperature_c": {"type": "integer"}},
                "required": ["temperature_c"],
            },
        },
    },
]


@pytest.fixture(scope="module")
def setup():
    up = OllamaUpstream().start()
    cfg = (
        f"providers:\n  - {{name: o, protocol: ollama, base_url: '{up.url}'}}\n"
        "models:\n  - {name: m, targets: [{provider: o, model: llama-fake}]}\n"
    )
    with GatewayServer(cfg) as gw:
        yield up, gw
    up.stop()


def _chat(gw, **body) -> httpx.Response:
    return httpx.post(
        gw.url + "/v1/chat/completions",
        timeout=10,
        json={
            "model": "m",
            "messages": [{"role": "user", "content": "report as json"}],
            "tools": TOOLS,
            **body,
        },
    )


def _calls_from_stream(r: httpx.Response) -> tuple[list[dict], str | None]:
    calls: dict[int, dict] = {}
    finish = None
    for line in r.text.splitlines():
        if not line.startswith("data: {"):
            continue
        choice = json.loads(line[6:])["choices"][0]
        for tc in choice["delta"].get("tool_calls") or []:
            c = calls.setdefault(tc["index"], {"name": "", "arguments": ""})
            c["name"] += (tc.get("function") or {}).get("name") or ""
            c["arguments"] += (tc.get("function") or {}).get("arguments") or ""
        finish = choice.get("finish_reason") or finish
    return list(calls.values()), finish


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize(
    "choice",
    ["required", {"type": "function", "function": {"name": "final_result"}}],
    ids=["required", "named"],
)
def test_forced_call_comes_back_as_a_call(setup, stream, choice):
    up, gw = setup
    up.reset()
    r = _chat(gw, tool_choice=choice, stream=stream)
    assert r.status_code == 200, r.text
    if stream:
        calls, finish = _calls_from_stream(r)
    else:
        msg = r.json()["choices"][0]["message"]
        calls = [tc["function"] for tc in msg["tool_calls"]]
        finish = r.json()["choices"][0]["finish_reason"]
    assert [c["name"] for c in calls] == ["final_result"] and finish == "tool_calls"
    assert json.loads(calls[0]["arguments"]) == {"temperature_c": 21}
    sent = up.last.json
    assert (
        "tools" not in sent and "tool_choice" not in sent
    )  # Ollama would ignore a choice: the format decides
    options = sent["format"].get("anyOf") or [sent["format"]]
    names = [o["properties"]["name"]["enum"] for o in options]
    assert names == ([["get_weather"], ["final_result"]] if choice == "required" else [["final_result"]])


def test_unforced_tools_and_a_native_call_pass_through(setup):
    up, gw = setup
    up.reset()
    r = httpx.post(
        gw.url + "/v1/chat/completions",
        timeout=10,
        json={
            "model": "m",
            "messages": [{"role": "user", "content": "what is the weather?"}],
            "tools": TOOLS,
        },
    )
    msg = r.json()["choices"][0]["message"]
    assert [tc["function"]["name"] for tc in msg["tool_calls"]] == ["get_weather"]
    assert "format" not in up.last.json and len(up.last.json["tools"]) == 2


def test_a_forced_call_wins_over_a_text_format(setup):
    """instructor's Responses mode sends both a forced tool and a text format; the call is what it reads."""
    _, gw = setup
    schema = TOOLS[1]["function"]["parameters"]
    r = _chat(
        gw,
        tool_choice={"type": "function", "function": {"name": "final_result"}},
        response_format={"type": "json_schema", "json_schema": {"name": "final_result", "schema": schema}},
    )
    msg = r.json()["choices"][0]["message"]
    assert [tc["function"]["name"] for tc in msg["tool_calls"]] == ["final_result"]
