"""End to end: streams through OpenAI, Anthropic and Gemini upstreams (the fakes, answering as gpt-4o,
claude-sonnet-4-5 and gemini-2.5-pro) land in a real SQLite ledger with their tokens and the cost the providers
would bill, computed by hand here from their published prices."""

from __future__ import annotations

import asyncio
from pathlib import Path

import openai
import pytest

from smolgate.config import parse_config
from smolgate.store.open import open_store
from tests.gateway_server import GatewayServer

PROMPT = "count USAGE_DETAIL tokens for me please"  # 6 tokens; the fakes report 3 cached and 3 reasoning
# upstream → (model the fake answers as, $ per 1M: input, cached input, output; reasoning included in output)
PRICED = {
    "openai": ("gpt-4o", 2.50, 1.25, 10.0),
    "anthropic": ("claude-sonnet-4-5", 3.0, 0.30, 15.0),
    "gemini": ("gemini-2.5-pro", 1.25, 0.125, 10.0),
}
KEYS = {"openai": "sk-up-openai", "anthropic": "sk-up-anthropic", "gemini": "up-gemini-key"}


def test_streamed_requests_are_priced_in_the_ledger(upstreams, tmp_path: Path):
    base = {
        "openai": upstreams["openai"].url + "/v1",
        **{p: upstreams[p].url for p in ("anthropic", "gemini")},
    }
    providers = "".join(
        f"  - {{name: up-{p}, protocol: {p}, base_url: '{base[p]}', accounts: [{{api_key: {KEYS[p]}}}]}}\n"
        for p in PRICED
    )
    models = "".join(
        f"  - {{name: priced-{p}, targets: [{{provider: up-{p}, model: {m}}}]}}\n"
        for p, (m, *_) in PRICED.items()
    )
    cfg = parse_config(
        f"providers:\n{providers}models:\n{models}store: sqlite:///{tmp_path / 'ledger.db'}\n"
        "ledger: {flush_interval: 0.05}\n"
    )
    words: dict[str, int] = {}
    with GatewayServer(cfg) as gw:
        client = openai.OpenAI(base_url=gw.url + "/v1", api_key="unused", max_retries=0)
        for p in PRICED:
            stream = client.chat.completions.create(
                model=f"priced-{p}", messages=[{"role": "user", "content": PROMPT}], stream=True
            )
            text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
            words[p] = len(text.split(" "))
    # the server has stopped: its ledger flushed every row

    async def read() -> list:
        store = await open_store(cfg)
        try:
            return await store.recent_usage(10)
        finally:
            await store.close()

    rows = {r.alias: r for r in asyncio.run(read())}
    assert set(rows) == {f"priced-{p}" for p in PRICED}
    for p, (model, inp, cached, out) in PRICED.items():
        r = rows[f"priced-{p}"]
        output = words[p] + 3
        assert (r.upstream_model, r.upstream_protocol, r.stream, r.status) == (model, p, True, 200)
        assert (r.input_tokens, r.cached_tokens, r.output_tokens) == (6, 3, output)
        expected = (3 * inp + 3 * cached + output * out) / 1e6
        assert r.cost_usd == pytest.approx(expected, rel=1e-9), p
