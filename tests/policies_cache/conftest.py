"""Gateways for the policy tests: the four fake upstreams (real HTTP servers on 127.0.0.1), a SQLite ledger
written every 50 ms, and helpers to read the ledger's rows back through the admin API."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.fakes.fleet import running_fakes
from tests.fakes.harness import FakeUpstream

UPSTREAM_KEYS = {
    "openai": "sk-up-openai",
    "anthropic": "sk-up-anthropic",
    "gemini": "up-gemini",
    "ollama": None,
}


def providers(urls: dict[str, str]) -> str:
    base = {
        "openai": urls["openai"] + "/v1",
        "anthropic": urls["anthropic"],
        "gemini": urls["gemini"],
        "ollama": urls["ollama"],
    }
    out = "providers:\n"
    for p, url in base.items():
        key = f"accounts: [{{api_key: {UPSTREAM_KEYS[p]}}}]\n" if UPSTREAM_KEYS[p] else ""
        out += f"  - name: up-{p}\n    protocol: {p}\n    base_url: {url}\n"
        out += f"    {key}" if key else ""
        out += "    timeouts: {connect: 2, first_byte: 10, idle: 5}\n"
    return out


@pytest.fixture(scope="module")
def fakes() -> Iterator[dict[str, FakeUpstream]]:
    with running_fakes(UPSTREAM_KEYS) as f:
        yield f


def ledger_row(gateway_url: str, rid: str) -> dict[str, Any]:
    """The ledger row of request `rid`, once the write-behind buffer has written it (bounded wait)."""
    with httpx.Client(base_url=gateway_url, timeout=10) as c:
        for _ in range(400):
            rows = c.get("/admin/usage/recent", params={"limit": 500}).json()["rows"]
            found = [r for r in rows if r["request_id"] == rid]
            if found:
                return found[0]
            time.sleep(0.05)
    raise AssertionError(f"no ledger row for {rid}")


def served_by_metric(gateway_url: str, alias: str, by: str) -> float:
    """`smolgate_served_by_policy_total{alias, by}` from /metrics (0 when absent)."""
    text = httpx.get(gateway_url + "/metrics", timeout=10).text
    prefix = f'smolgate_served_by_policy_total{{alias="{alias}",by="{by}"}} '
    return next((float(line[len(prefix) :]) for line in text.splitlines() if line.startswith(prefix)), 0.0)
