"""reasoning.py's level table, both ways, and each codec's use of it (wire → canonical → another wire)."""

from __future__ import annotations

import orjson
import pytest

from smolgate import reasoning
from smolgate.canonical import AnthropicExtras, Extras, Message, ReasoningConfig, Request, Text
from smolgate.protocols import codec
from smolgate.protocols.base import RequestContext

CTX = RequestContext()
LEVELS = ["minimal", "low", "medium", "high", "xhigh", "max"]


@pytest.mark.parametrize("level", LEVELS)
def test_effort_to_budget_and_back_is_the_identity(level):
    assert reasoning.effort_from_budget(reasoning.EFFORT_BUDGET[level]) == level


@pytest.mark.parametrize(
    ("budget", "level"),
    [
        (0, "none"),
        (-3, "none"),
        (1, "minimal"),
        (128, "minimal"),
        (129, "low"),
        (1024, "low"),
        (1025, "medium"),
        (2048, "medium"),
        (4000, "high"),
        (8192, "xhigh"),
        (8193, "max"),
        (10**6, "max"),
    ],
)
def test_budget_maps_to_the_smallest_covering_level(budget, level):
    assert reasoning.effort_from_budget(budget) == level


# (canonical config, OpenAI reasoning_effort, Anthropic thinking, Gemini thinkingConfig, Ollama think)
TABLE = [
    (
        ReasoningConfig(effort="low"),
        "low",
        {"type": "enabled", "budget_tokens": 1024},
        {"thinkingBudget": 1024, "includeThoughts": True},
        "low",
    ),
    (
        ReasoningConfig(effort="minimal"),
        "minimal",
        {"type": "enabled", "budget_tokens": 1024},
        {"thinkingBudget": 128, "includeThoughts": True},
        "low",
    ),
    (
        ReasoningConfig(effort="high"),
        "high",
        {"type": "enabled", "budget_tokens": 4096},
        {"thinkingBudget": 4096, "includeThoughts": True},
        "high",
    ),
    (
        ReasoningConfig(effort="max"),
        "high",
        {"type": "enabled", "budget_tokens": 16384},
        {"thinkingBudget": 16384, "includeThoughts": True},
        "high",
    ),
    (
        ReasoningConfig(budget_tokens=2000),
        "medium",
        {"type": "enabled", "budget_tokens": 2000},
        {"thinkingBudget": 2000, "includeThoughts": True},
        "medium",
    ),
    (
        ReasoningConfig(budget_tokens=20000),
        "high",
        {"type": "enabled", "budget_tokens": 20000},
        {"thinkingBudget": 20000, "includeThoughts": True},
        "high",
    ),
    (
        ReasoningConfig(),
        "medium",
        {"type": "enabled", "budget_tokens": 2048},
        {"thinkingBudget": -1, "includeThoughts": True},
        True,
    ),
    (ReasoningConfig(enabled=False), None, {"type": "disabled"}, {"thinkingBudget": 0}, False),
    (
        ReasoningConfig(enabled=False, effort="none"),
        "none",
        {"type": "disabled"},
        {"thinkingBudget": 0},
        False,
    ),
]


def _encode(proto: str, cfg: ReasoningConfig) -> dict:
    req = Request(
        model="m", messages=[Message(role="user", content=[Text(text="q")])], reasoning=cfg, max_tokens=50000
    )
    return orjson.loads(codec(proto).encode_request(req, "m").body)


@pytest.mark.parametrize(("cfg", "openai", "anthropic", "gemini", "ollama"), TABLE)
def test_each_upstream_gets_the_mapped_level(cfg, openai, anthropic, gemini, ollama):
    assert _encode("openai", cfg).get("reasoning_effort") == openai
    assert _encode("anthropic", cfg).get("thinking") == anthropic
    assert _encode("gemini", cfg)["generationConfig"].get("thinkingConfig") == gemini
    assert _encode("ollama", cfg).get("think") == ollama


def _decode(proto: str, body: dict, path: dict | None = None) -> Request:
    return codec(proto).decode_request(orjson.dumps(body), RequestContext(path_params=path or {}))


MSG = [{"role": "user", "content": "q"}]


@pytest.mark.parametrize(
    ("body", "want"),
    [
        ({"model": "m", "messages": MSG, "reasoning_effort": "high"}, ReasoningConfig(effort="high")),
        (
            {"model": "m", "messages": MSG, "reasoning_effort": "none"},
            ReasoningConfig(enabled=False, effort="none"),
        ),
    ],
)
def test_openai_client_effort_is_a_request(body, want):
    assert _decode("openai", body).reasoning == want


def test_anthropic_client_effort_without_thinking_is_only_a_hint():
    base = {"model": "m", "max_tokens": 10, "messages": MSG}
    r = _decode("anthropic", {**base, "output_config": {"effort": "high"}})
    assert r.reasoning == ReasoningConfig(effort="high", hint=True)
    r = _decode("anthropic", {**base, "thinking": {"type": "disabled"}, "output_config": {"effort": "high"}})
    assert r.reasoning == ReasoningConfig(enabled=False)
    r = _decode("anthropic", {**base, "thinking": {"type": "adaptive"}, "output_config": {"effort": "high"}})
    assert r.reasoning == ReasoningConfig(effort="high") and not r.reasoning.hint
    r = _decode("anthropic", {**base, "thinking": {"type": "enabled", "budget_tokens": 3000}})
    assert r.reasoning == ReasoningConfig(budget_tokens=3000)


def test_gemini_client_include_thoughts_alone_is_a_hint_and_levels_round_trip():
    path = {"model": "gemini-x", "method": "generateContent"}
    contents = [{"role": "user", "parts": [{"text": "q"}]}]
    r = _decode(
        "gemini",
        {"contents": contents, "generationConfig": {"thinkingConfig": {"includeThoughts": True}}},
        path,
    )
    assert r.reasoning == ReasoningConfig(include_thoughts=True, hint=True)
    r = _decode(
        "gemini",
        {"contents": contents, "generationConfig": {"thinkingConfig": {"thinkingLevel": "LOW"}}},
        path,
    )
    assert r.reasoning == ReasoningConfig(effort="low")
    sent = orjson.loads(codec("gemini").encode_request(r, "g").body)["generationConfig"]["thinkingConfig"]
    assert sent == {
        "thinkingLevel": "LOW",
        "includeThoughts": True,
    }  # Gemini → Gemini: the client's own level
    assert orjson.loads(codec("openai").encode_request(r, "o").body)["reasoning_effort"] == "low"
    r = _decode(
        "gemini", {"contents": contents, "generationConfig": {"thinkingConfig": {"thinkingBudget": 0}}}, path
    )
    assert r.reasoning == ReasoningConfig(enabled=False)


@pytest.mark.parametrize(
    ("think", "want"),
    [
        (True, ReasoningConfig()),
        (False, ReasoningConfig(enabled=False)),
        ("medium", ReasoningConfig(effort="medium")),
    ],
)
def test_ollama_client_think(think, want):
    assert _decode("ollama", {"model": "m", "messages": MSG, "think": think}).reasoning == want


def test_hint_reaches_only_declared_reasoning_targets():
    req = Request(
        model="m",
        messages=[Message(role="user", content=[Text(text="q")])],
        reasoning=ReasoningConfig(effort="high", hint=True),
        extras=Extras(anthropic=AnthropicExtras(effort="high")),
    )
    assert reasoning.for_target(req, None).reasoning is None
    assert reasoning.for_target(req, None).extras.anthropic.effort == "high"  # Anthropic upstreams keep it
    assert reasoning.for_target(req, True).reasoning == req.reasoning
    assert (
        orjson.loads(codec("openai").encode_request(reasoning.for_target(req, True), "o").body)[
            "reasoning_effort"
        ]
        == "high"
    )
    off = reasoning.for_target(req, False)
    assert off.reasoning is None and off.extras == Extras()
    real = Request(model="m", messages=req.messages, reasoning=ReasoningConfig(effort="high"))
    assert reasoning.for_target(real, None) is real


def test_learned_refusals_are_bounded_and_expire():
    policy = reasoning.ReasoningPolicy({("alias", "p", "declared"): True}, max_entries=3, ttl=60.0)
    for i in range(5):
        policy.learn("p", f"m{i}")
    assert [policy.reasons("p", f"m{i}") for i in range(5)] == [None, None, False, False, False]
    policy.learn("p", "declared")  # a declaration always wins over what was learned
    assert policy.reasons("p", "declared", "alias") is True
    policy._ttl = -1.0  # everything learned is now older than the ttl
    assert policy.reasons("p", "m4") is None and len(policy._learned) < 4
