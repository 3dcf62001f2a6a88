"""Gateways for the observability tests: in front of the OpenAI and Anthropic fakes, plus a provider on a closed
port (connection refused) so that fallbacks happen."""

from __future__ import annotations

import socket

import pytest

from tests.fakes.fleet import running_fakes
from tests.fakes.harness import FakeUpstream

UPSTREAM_KEYS = {"openai": "sk-up-openai", "anthropic": "sk-up-anthropic", "gemini": "up-g", "ollama": None}


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def obs_config(fakes: dict[str, FakeUpstream], extra: str = "") -> str:
    """Aliases: `fast` (OpenAI fake, account `main`; account `off` is disabled), `claude` (Anthropic fake),
    `flaky` (a dead provider first, then `fast` as its fallback)."""
    return (
        "providers:\n"
        f"  - name: up-openai\n    protocol: openai\n    base_url: {fakes['openai'].url}/v1\n"
        "    accounts:\n      - {name: main, api_key: sk-up-openai}\n"
        "      - {name: 'off', api_key: sk-unused, enabled: false}\n"
        f"  - name: up-anthropic\n    protocol: anthropic\n    base_url: {fakes['anthropic'].url}\n"
        "    accounts: [{name: ant, api_key: sk-up-anthropic}]\n"
        f"  - name: dead\n    protocol: openai\n    base_url: http://127.0.0.1:{closed_port()}/v1\n"
        "    accounts: [{name: d1, api_key: sk-dead}]\n"
        "models:\n"
        "  - name: fast\n    targets: [{provider: up-openai, model: gpt-fake}]\n"
        "  - name: claude\n    targets: [{provider: up-anthropic, model: claude-fake}]\n"
        "  - name: flaky\n    targets: [{provider: dead, model: gpt-dead}]\n    fallbacks: [fast]\n"
        f"{extra}"
    )


@pytest.fixture(scope="session")
def fakes():
    with running_fakes(UPSTREAM_KEYS) as f:
        yield f
