"""A gateway whose model aliases are all `privacy: redact`, in front of the four fake upstreams (which record
every request they receive), and one plain alias per upstream for policies asked per request or per key."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fakes.fleet import running_fakes
from tests.fakes.harness import FakeUpstream
from tests.gateway_server import GatewayServer

UPSTREAM_KEYS = {
    "openai": "sk-up-openai",
    "anthropic": "sk-up-anthropic",
    "gemini": "up-gemini",
    "ollama": None,
}
PROTOCOLS = ["openai", "openai-responses", "anthropic", "gemini", "ollama"]


def privacy_config(urls: dict[str, str], extra: str = "") -> str:
    base = {p: urls[p] for p in ("anthropic", "gemini", "ollama")}
    base["openai"] = base["openai-responses"] = urls["openai"] + "/v1"
    keys = {**UPSTREAM_KEYS, "openai-responses": UPSTREAM_KEYS["openai"]}
    providers = "".join(
        f"  - name: up-{p}\n    protocol: {p}\n    base_url: {base[p]}\n"
        f"    accounts: [{{api_key: {keys[p] or 'none'}}}]\n"
        for p in PROTOCOLS
    )
    models = "".join(
        f"  - name: redact-{p}\n    privacy: redact\n    targets: [{{provider: up-{p}, model: {p}-model}}]\n"
        f"  - name: plain-{p}\n    targets: [{{provider: up-{p}, model: {p}-model}}]\n"
        for p in PROTOCOLS
    )
    return f"providers:\n{providers}models:\n{models}retry: {{attempts: 2, deadline: 20}}\n{extra}"


@pytest.fixture(scope="session")
def fakes() -> Iterator[dict[str, FakeUpstream]]:
    with running_fakes(UPSTREAM_KEYS) as running:
        yield {**running, "openai-responses": running["openai"]}


@pytest.fixture(scope="session")
def privacy_gateway(fakes: dict[str, FakeUpstream]) -> Iterator[GatewayServer]:
    with GatewayServer(privacy_config({k: f.url for k, f in fakes.items()})) as gw:
        yield gw
