"""The reasoning policy through a real gateway and fake upstreams that refuse what the real APIs refuse:
reasoning_effort on a non-reasoning OpenAI model, `think` on an Ollama model without thinking, thinkingConfig on a
Gemini model that cannot think, thinking on a Claude model without it."""

from __future__ import annotations

import httpx
import pytest

from tests.fakes.anthropic_upstream import AnthropicUpstream
from tests.fakes.gemini_upstream import GeminiUpstream
from tests.fakes.ollama_upstream import OllamaUpstream
from tests.fakes.openai_upstream import OpenAIUpstream
from tests.gateway_server import GatewayServer


@pytest.fixture(scope="module")
def fakes():
    ups = {
        "openai": OpenAIUpstream(api_key="k-o"),
        "ollama": OllamaUpstream(),
        "gemini": GeminiUpstream(api_key="k-g"),
        "anthropic": AnthropicUpstream(api_key="k-a"),
    }
    for f in ups.values():
        f.start()
    yield ups
    for f in ups.values():
        f.stop()


def config(f: dict) -> str:
    return f"""
providers:
  - {{name: oai, protocol: openai, base_url: "{f["openai"].url}/v1", accounts: [{{api_key: k-o}}]}}
  - {{name: oll, protocol: ollama, base_url: "{f["ollama"].url}"}}
  - {{name: gem, protocol: gemini, base_url: "{f["gemini"].url}", accounts: [{{api_key: k-g}}]}}
  - {{name: ant, protocol: anthropic, base_url: "{f["anthropic"].url}", accounts: [{{api_key: k-a}}]}}
models:
  - {{name: gpt, targets: [{{provider: oai, model: gpt-fake}}]}}
  - {{name: reasoner, targets: [{{provider: oai, model: gpt-fake-reasoner}}]}}
  - {{name: reasoner-on, targets: [{{provider: oai, model: gpt-fake-reasoner, reasoning: true}}]}}
  - {{name: gpt-off, targets: [{{provider: oai, model: gpt-fake-reasoner, reasoning: false}}]}}
  - {{name: llama, targets: [{{provider: oll, model: llama-fake}}]}}
  - {{name: flash2, targets: [{{provider: gem, model: gemini-2.0-fake}}]}}
  - {{name: claude-nothink, targets: [{{provider: ant, model: claude-nothink}}]}}
retry: {{attempts: 2, deadline: 20}}
"""


@pytest.fixture
def gw(fakes):
    for f in fakes.values():
        f.reset()
    with GatewayServer(config(fakes)) as g:  # fresh: what a gateway learned must not leak between tests
        yield g


def anthropic(gw, model: str, stream: bool = False, **extra) -> httpx.Response:
    body = {
        "model": model,
        "max_tokens": 100,
        "messages": [{"role": "user", "content": "hello"}],
        "stream": stream,
        **extra,
    }
    return httpx.post(gw.url + "/v1/messages", json=body, headers={"x-api-key": "x"}, timeout=20)


CLAUDE_CODE_TITLE = {"thinking": {"type": "disabled"}, "output_config": {"effort": "high"}}
CLAUDE_CODE_MAIN = {"thinking": {"type": "adaptive"}, "output_config": {"effort": "high"}}


def test_an_effort_alone_is_never_sent_to_an_openai_model(gw, fakes):
    for extra in ({"output_config": {"effort": "high"}}, CLAUDE_CODE_TITLE):
        fakes["openai"].reset()
        r = anthropic(gw, "gpt", **extra)
        assert r.status_code == 200, r.text
        assert [("reasoning_effort" in q.json) for q in fakes["openai"].requests] == [False]


@pytest.mark.parametrize("stream", [False, True])
def test_refused_reasoning_is_retried_without_it_once_then_remembered(gw, fakes, stream):
    r = anthropic(gw, "gpt", stream=stream, **CLAUDE_CODE_MAIN)
    assert r.status_code == 200, r.text
    assert "hello" in r.text and "error" not in r.text
    sent = [q.json.get("reasoning_effort") for q in fakes["openai"].requests]
    assert sent == ["high", None]  # refused once, then the same call without it
    r = anthropic(gw, "gpt", stream=stream, **CLAUDE_CODE_MAIN)
    assert r.status_code == 200
    assert [q.json.get("reasoning_effort") for q in fakes["openai"].requests] == ["high", None, None]


def test_a_reasoning_model_gets_the_mapped_effort(gw, fakes):
    r = anthropic(gw, "reasoner", thinking={"type": "enabled", "budget_tokens": 1500})
    assert r.status_code == 200
    assert [q.json.get("reasoning_effort") for q in fakes["openai"].requests] == ["medium"]


def test_declared_targets(gw, fakes):
    assert (
        anthropic(gw, "reasoner-on", output_config={"effort": "low"}).status_code == 200
    )  # a hint, declared on
    r = httpx.post(
        gw.url + "/v1/chat/completions",
        headers={"authorization": "Bearer x"},
        timeout=20,
        json={
            "model": "gpt-off",
            "reasoning_effort": "high",
            "messages": [{"role": "user", "content": "hello"}],
        },
    )
    assert r.status_code == 200
    assert [q.json.get("reasoning_effort") for q in fakes["openai"].requests] == ["low", None]


def test_other_client_errors_are_not_retried(gw, fakes):
    r = anthropic(
        gw, "reasoner", messages=[{"role": "user", "content": "FAIL_STATUS_400"}], **CLAUDE_CODE_MAIN
    )
    assert r.status_code == 400
    assert len(fakes["openai"].requests) == 1


def test_ollama_gets_no_think_unless_asked_and_learns_refusals(gw, fakes):
    gem = {
        "contents": [{"role": "user", "parts": [{"text": "hello"}]}],
        "generationConfig": {"thinkingConfig": {"includeThoughts": True}},
    }
    r = httpx.post(
        gw.url + "/v1beta/models/llama:generateContent", json=gem, headers={"x-goog-api-key": "x"}, timeout=20
    )
    assert r.status_code == 200, r.text
    assert [q.json.get("think") for q in fakes["ollama"].requests] == [None]
    assert anthropic(gw, "llama", **CLAUDE_CODE_TITLE).status_code == 200  # thinking off: think false is fine
    assert anthropic(gw, "llama", stream=True, **CLAUDE_CODE_MAIN).status_code == 200
    assert [q.json.get("think") for q in fakes["ollama"].requests] == [None, False, "high", None]


def test_gemini_and_anthropic_refusals(gw, fakes):
    assert anthropic(gw, "flash2", thinking={"type": "enabled", "budget_tokens": 2048}).status_code == 200
    sent = [
        q.json["generationConfig"].get("thinkingConfig") if "generationConfig" in q.json else None
        for q in fakes["gemini"].requests
    ]
    assert sent == [{"thinkingBudget": 2048, "includeThoughts": True}, None]
    edits = [{"type": "clear_thinking_20251015", "keep": "all"}, {"type": "clear_tool_uses_20250919"}]
    r = anthropic(gw, "claude-nothink", context_management={"edits": edits}, **CLAUDE_CODE_MAIN)
    assert r.status_code == 200, r.text
    bodies = [q.json for q in fakes["anthropic"].requests]
    assert [b.get("thinking") for b in bodies] == [{"type": "adaptive"}, None]
    assert "output_config" not in bodies[1]
    assert bodies[1]["context_management"] == {
        "edits": edits[1:]
    }  # the thinking-only edit goes with thinking
