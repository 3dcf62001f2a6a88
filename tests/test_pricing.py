"""Cost per request: hand-computed examples from the providers' published prices, the usage decoded from each
upstream's own wire format (so the decoders' inclusive-count convention is checked with the price), and the
same figure from genai-prices' own calculator."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import orjson
import pytest
from genai_prices import Usage as TableUsage
from genai_prices import calc_price

from smolgate.canonical import Usage
from smolgate.config import parse_config
from smolgate.pricing import Pricing
from smolgate.protocols import codec
from smolgate.protocols.anthropic_stream import usage_json
from smolgate.telemetry import RequestRecord

CONFIG = """
providers:
  - {name: oai, protocol: openai, base_url: "https://api.openai.com/v1"}
  - {name: ant, protocol: anthropic, base_url: "https://api.anthropic.com"}
  - {name: gem, protocol: gemini, base_url: "https://generativelanguage.googleapis.com"}
  - {name: vllm, protocol: openai, base_url: "http://10.0.0.5:8000/v1"}
  - {name: oll, protocol: ollama, base_url: "http://127.0.0.1:11434"}
  - {name: deepseek, protocol: openai, base_url: "https://api.deepseek.com/v1"}
ledger:
  prices:
    my-finetune: {input: 1.0, output: 2.0, cached_input: 0.1}
    gpt-4o-mini: {input: 100, output: 200}
    paid-ollama: {input: 0.5, output: 1.5}
"""


@pytest.fixture(scope="module")
def pricing() -> Pricing:
    return Pricing(parse_config(CONFIG))


def record(provider: str, protocol: str, model: str, usage: Usage) -> RequestRecord:
    rec = RequestRecord("req-1", "POST", "/v1/chat/completions")
    rec.begin_attempt("elsewhere", "acct", "other-model", "openai")  # a failed first attempt: not priced
    rec.begin_attempt(provider, "acct", model, protocol)
    rec.usage = usage
    return rec


def decode(protocol: str, body: dict) -> Usage:
    return codec(protocol).decode_response(orjson.dumps(body)).usage


def table(model: str, provider: str, when: datetime | None = None, **usage: int) -> float:
    calc = calc_price(TableUsage(**usage), model, provider_id=provider, genai_request_timestamp=when)
    return float(calc.total_price)


def test_openai_cached_input_is_discounted(pricing: Pricing):
    # gpt-4o: $2.50 input, $1.25 cached input, $10 output per 1M tokens.
    usage = decode(
        "openai",
        {
            "choices": [{"message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}],
            "usage": {
                "prompt_tokens": 10_000,  # OpenAI counts cached tokens inside prompt_tokens
                "completion_tokens": 1_000,
                "prompt_tokens_details": {"cached_tokens": 4_000},
            },
        },
    )
    assert (usage.input_tokens, usage.cached_tokens, usage.output_tokens) == (10_000, 4_000, 1_000)
    expected = (6_000 * 2.50 + 4_000 * 1.25 + 1_000 * 10.0) / 1e6  # 0.030
    cost = pricing.cost_of(record("oai", "openai", "gpt-4o", usage))
    assert cost == pytest.approx(expected) == 0.030
    assert cost == pytest.approx(
        table("gpt-4o", "openai", input_tokens=10_000, cache_read_tokens=4_000, output_tokens=1_000)
    )


def test_openai_reasoning_is_billed_as_output_once(pricing: Pricing):
    # o3: $2 input, $8 output per 1M tokens; reasoning tokens are part of completion_tokens.
    usage = decode(
        "openai-responses",
        {
            "id": "resp_1",
            "status": "completed",
            "output": [
                {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "4"}]}
            ],
            "usage": {
                "input_tokens": 2_000,
                "input_tokens_details": {"cached_tokens": 0},
                "output_tokens": 3_000,
                "output_tokens_details": {"reasoning_tokens": 2_500},
            },
        },
    )
    assert (usage.output_tokens, usage.reasoning_tokens) == (3_000, 2_500)
    expected = (2_000 * 2.0 + 3_000 * 8.0) / 1e6  # 0.028: reasoning at the output price, not added twice
    cost = pricing.cost_of(record("oai", "openai-responses", "o3", usage))
    assert cost == pytest.approx(expected) == 0.028
    assert cost == pytest.approx(table("o3", "openai", input_tokens=2_000, output_tokens=3_000))


def test_anthropic_cache_writes_cost_more_and_reads_less(pricing: Pricing):
    # claude-sonnet-4-5: $3 input, $3.75 cache write (1.25×), $0.30 cache read (0.1×), $15 output per 1M.
    usage = decode(
        "anthropic",
        {
            "id": "msg_1",
            "type": "message",
            "role": "assistant",
            "model": "claude-sonnet-4-5",
            "content": [{"type": "text", "text": "hi"}],
            "stop_reason": "end_turn",
            "usage": {  # Anthropic's input_tokens EXCLUDES cache reads and writes
                "input_tokens": 1_000,
                "cache_creation_input_tokens": 2_000,
                "cache_read_input_tokens": 5_000,
                "output_tokens": 500,
            },
        },
    )
    assert (usage.input_tokens, usage.cached_tokens, usage.cache_creation_tokens) == (8_000, 5_000, 2_000)
    expected = (1_000 * 3.0 + 2_000 * 3.75 + 5_000 * 0.30 + 500 * 15.0) / 1e6  # 0.0195
    cost = pricing.cost_of(record("ant", "anthropic", "claude-sonnet-4-5", usage))
    assert cost == pytest.approx(expected) == 0.0195
    assert cost == pytest.approx(
        table(
            "claude-sonnet-4-5",
            "anthropic",
            input_tokens=8_000,
            cache_read_tokens=5_000,
            cache_write_tokens=2_000,
            output_tokens=500,
        )
    )


def gemini_body(**usage: int) -> dict:
    return {
        "candidates": [{"content": {"role": "model", "parts": [{"text": "hi"}]}, "finishReason": "STOP"}],
        "usageMetadata": usage,
    }


def test_gemini_thinking_tokens_are_billed_at_the_output_price(pricing: Pricing):
    # gemini-2.5-pro, prompts up to 200k: $1.25 input, $0.125 cached, $10 output (thinking included) per 1M.
    usage = decode(
        "gemini",
        gemini_body(
            promptTokenCount=10_000,  # includes the cached part
            cachedContentTokenCount=4_000,
            candidatesTokenCount=1_000,  # EXCLUDES thoughts
            thoughtsTokenCount=3_000,
            totalTokenCount=14_000,
        ),
    )
    assert (usage.output_tokens, usage.reasoning_tokens, usage.cached_tokens) == (4_000, 3_000, 4_000)
    expected = (6_000 * 1.25 + 4_000 * 0.125 + 4_000 * 10.0) / 1e6  # 0.048
    cost = pricing.cost_of(record("gem", "gemini", "models/gemini-2.5-pro", usage))
    assert cost == pytest.approx(expected) == 0.048
    assert cost == pytest.approx(
        table("gemini-2.5-pro", "google", input_tokens=10_000, cache_read_tokens=4_000, output_tokens=4_000)
    )


def test_gemini_long_prompts_bill_every_token_at_the_higher_tier(pricing: Pricing):
    # gemini-2.5-pro, prompts over 200k: $2.50 input, $15 output per 1M (for all tokens, not just the excess).
    usage = decode(
        "gemini",
        gemini_body(promptTokenCount=300_000, candidatesTokenCount=1_000, totalTokenCount=301_000),
    )
    expected = (300_000 * 2.50 + 1_000 * 15.0) / 1e6  # 0.765
    cost = pricing.cost_of(record("gem", "gemini", "gemini-2.5-pro", usage))
    assert cost == pytest.approx(expected) == 0.765
    assert cost == pytest.approx(table("gemini-2.5-pro", "google", input_tokens=300_000, output_tokens=1_000))
    at_limit = Usage(input_tokens=200_000, output_tokens=1_000)  # exactly 200k: still the base tier
    assert pricing.cost_of(record("gem", "gemini", "gemini-2.5-pro", at_limit)) == pytest.approx(
        (200_000 * 1.25 + 1_000 * 10.0) / 1e6
    )


def test_config_overrides_win_over_the_table(pricing: Pricing):
    u = Usage(input_tokens=1_000_000, cached_tokens=500_000, output_tokens=1_000_000)
    # my-finetune: $1 input, $0.10 cached, $2 output per 1M (override).
    assert pricing.cost_of(record("vllm", "openai", "my-finetune", u)) == pytest.approx(0.5 + 0.05 + 2.0)
    # gpt-4o-mini overridden at $100 / $200 per 1M; no cached price: cache reads at the input price.
    assert pricing.cost_of(record("oai", "openai", "gpt-4o-mini", u)) == pytest.approx(100.0 + 200.0)
    # an Ollama host is free unless an override names its model
    assert pricing.cost_of(record("oll", "ollama", "paid-ollama", u)) == pytest.approx(0.5 + 1.5)


def test_local_engine_and_ollama_are_free(pricing: Pricing):
    u = Usage(input_tokens=10_000, output_tokens=10_000)
    assert pricing.cost_of(record("engine", "local", "default", u)) == 0.0
    assert pricing.cost_of(record("engine", "local", "my-finetune", u)) == 0.0  # local: never an override
    assert pricing.cost_of(record("oll", "ollama", "llama3.1", u)) == 0.0


def test_a_host_the_table_knows_prices_its_own_models(pricing: Pricing):
    # deepseek-chat at api.deepseek.com: priced from DeepSeek's own table entry, not OpenAI's.
    u = Usage(input_tokens=1_000_000, output_tokens=1_000_000)
    cost = pricing.cost_of(record("deepseek", "openai", "deepseek-chat", u))
    assert cost == pytest.approx(
        table("deepseek-chat", "deepseek", input_tokens=1_000_000, output_tokens=1_000_000)
    )
    assert cost > 0


def test_a_time_of_day_price_follows_the_requests_own_time(pricing: Pricing):
    # DeepSeek's off-peak hours (16:30-00:30 UTC) are half price: a request is priced at the time it arrived
    u = Usage(input_tokens=1_000_000, output_tokens=1_000_000)
    costs = []
    for hour in (10, 18):
        when = datetime(2026, 12, 7, hour, 5, tzinfo=UTC)
        rec = record("deepseek", "openai", "deepseek-chat", u)
        rec.ts = when.timestamp()
        costs.append(pricing.cost_of(rec))
        expected = table("deepseek-chat", "deepseek", when, input_tokens=1_000_000, output_tokens=1_000_000)
        assert costs[-1] == pytest.approx(expected)
    assert costs[1] < costs[0]


def test_unknown_models_cost_nothing_logged_once_and_counted(caplog: pytest.LogCaptureFixture):
    pricing = Pricing(parse_config(CONFIG))
    u = Usage(input_tokens=100, output_tokens=100)
    with caplog.at_level(logging.DEBUG, logger="smolgate.pricing"):
        for _ in range(3):
            assert pricing.cost_of(record("vllm", "openai", "llama-3.1-8b-selfhosted", u)) == 0.0
    assert pricing.unknown_models == {"llama-3.1-8b-selfhosted"}
    assert pricing.unpriced == 3
    assert [r.getMessage() for r in caplog.records].count(
        "no price for model 'llama-3.1-8b-selfhosted' (provider 'vllm'): its requests cost 0"
    ) == 1


def test_nothing_to_price(pricing: Pricing):
    rec = RequestRecord("req-2", "POST", "/v1/chat/completions")
    assert pricing.cost_of(rec) == 0.0  # refused before any attempt
    rec.begin_attempt("oai", "acct", "gpt-4o", "openai")
    assert pricing.cost_of(rec) == 0.0  # failed: no usage


def test_warm_prices_the_configured_targets_and_names_the_unknown(caplog: pytest.LogCaptureFixture):
    cfg = parse_config(
        CONFIG
        + """
models:
  - name: smart
    targets: [{provider: oai, model: gpt-4o}, {provider: ant, model: claude-sonnet-4-5}]
  - name: mine
    targets: [{provider: vllm, model: my-llama}, {provider: vllm, model: my-finetune}]
  - name: home
    targets: [{provider: oll, model: llama3.1}]
"""
    )
    pricing = Pricing(cfg)
    with caplog.at_level(logging.DEBUG, logger="smolgate.pricing"):
        assert pricing.warm() == ["my-llama"]  # my-finetune has an override; Ollama is free
        pricing.cost_of(record("vllm", "openai", "my-llama", Usage(input_tokens=1)))
    assert [r.levelno for r in caplog.records] == [logging.INFO]  # said once, at start, where operators look
    assert "my-llama" in caplog.records[0].getMessage() and "ledger.prices" in caplog.records[0].getMessage()


def test_anthropic_one_hour_cache_writes_cost_twice_the_input(pricing: Pricing):
    # claude-sonnet-4-5: $3 input, $3.75 5-minute cache write, $6 1-hour cache write, $15 output per 1M.
    body = {
        "id": "msg_2",
        "type": "message",
        "role": "assistant",
        "content": [{"type": "text", "text": "hi"}],
        "stop_reason": "end_turn",
        "usage": {
            "input_tokens": 1_000,
            "cache_creation_input_tokens": 3_000,
            "cache_creation": {"ephemeral_5m_input_tokens": 1_000, "ephemeral_1h_input_tokens": 2_000},
            "cache_read_input_tokens": 0,
            "output_tokens": 100,
        },
    }
    usage = decode("anthropic", body)
    assert (usage.input_tokens, usage.cache_creation_tokens, usage.cache_creation_1h_tokens) == (
        4_000,
        3_000,
        2_000,
    )
    expected = (1_000 * 3.0 + 1_000 * 3.75 + 2_000 * 6.0 + 100 * 15.0) / 1e6  # 0.02025
    cost = pricing.cost_of(record("ant", "anthropic", "claude-sonnet-4-5", usage))
    assert cost == pytest.approx(expected) == 0.02025
    assert cost == pytest.approx(
        table(
            "claude-sonnet-4-5",
            "anthropic",
            input_tokens=4_000,
            cache_write_tokens=3_000,
            cache_write_1h_tokens=2_000,
            output_tokens=100,
        )
    )
    # and an Anthropic client is shown the same split
    split = {"ephemeral_5m_input_tokens": 1_000, "ephemeral_1h_input_tokens": 2_000}
    assert usage_json(usage)["cache_creation"] == split
