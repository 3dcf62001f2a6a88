"""Gateways for the gateway tests: one in front of four real fake upstreams (one per upstream protocol), and one
in front of the embedded engine with a tiny random SmolVLM; each lives for the whole module."""

from __future__ import annotations

import contextlib
import io
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakes.fleet import running_fakes
from tests.fakes.harness import FakeUpstream
from tests.gateway_server import GatewayServer

sys.path.insert(
    0, str(Path(__file__).resolve().parents[1] / "engine")
)  # tests/engine modules import by basename
from checkpoints import make_checkpoint

UPSTREAM_KEYS = {
    "openai": "sk-up-openai",
    "anthropic": "sk-up-anthropic",
    "gemini": "up-gemini-key",
    "ollama": "up-ollama",
}


def matrix_config(urls: dict[str, str], extra: str = "") -> str:
    base = {
        "openai": urls["openai"] + "/v1",
        "anthropic": urls["anthropic"],
        "gemini": urls["gemini"],
        "ollama": urls["ollama"],
        "openai-responses": urls["openai"] + "/v1",
    }
    keys = {**UPSTREAM_KEYS, "openai-responses": UPSTREAM_KEYS["openai"]}
    providers = "".join(
        f"  - name: up-{p}\n    protocol: {p}\n    base_url: {base[p]}\n    accounts: [{{api_key: {keys[p]}}}]\n"
        "    timeouts: {first_byte: 10, idle: 5}\n"
        for p in base
    )
    models = "".join(
        f"  - name: via-{p}\n    targets: [{{provider: up-{p}, model: {p}-model}}]\n" for p in base
    )
    return f"providers:\n{providers}models:\n{models}retry: {{attempts: 2, deadline: 20}}\n{extra}"


@contextlib.contextmanager
def matrix_upstreams() -> Iterator[dict[str, FakeUpstream]]:
    """The four fakes with `UPSTREAM_KEYS`, the OpenAI one also as "openai-responses" (it serves both APIs)."""
    with running_fakes(UPSTREAM_KEYS) as fakes:
        yield {**fakes, "openai-responses": fakes["openai"]}


@pytest.fixture(scope="session")
def upstreams():
    with matrix_upstreams() as fakes:
        yield fakes


@pytest.fixture(scope="session")
def gateway(upstreams):
    with GatewayServer(matrix_config({k: f.url for k, f in upstreams.items()})) as gw:
        yield gw


@pytest.fixture(scope="session")
def png() -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (8, 6), (200, 30, 30)).save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def vlm_gateway(tmp_path_factory):
    """`protocol: local` serving a tiny random SmolVLM2 (256M layout) as model `vlm`."""
    path, _ = make_checkpoint("smolvlm2-256m", tmp_path_factory.mktemp("vlm") / "tiny-smolvlm2")
    cfg = (
        f"providers:\n  - name: local\n    protocol: local\n    model: {path}\n"
        "models:\n  - name: vlm\n    targets: [{provider: local, model: default}]\n"
    )
    with GatewayServer(cfg) as gw:
        yield gw
