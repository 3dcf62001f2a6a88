"""A gateway with the tiny random SmolVLM2 as the vision bridge's model, in front of the four fake upstreams whose
`textonly` models refuse images with their real wording (tests/fakes/vision_rules.py); shared by the session."""

from __future__ import annotations

import importlib
import io
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fakes.fleet import running_fakes
from tests.fakes.harness import FakeUpstream
from tests.gateway_server import GatewayServer

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "engine"))  # tests/engine modules by basename
from checkpoints import make_checkpoint

KEYS = {"openai": "sk-up-openai", "anthropic": "sk-up-anthropic", "gemini": "up-gemini-key", "ollama": None}
BASE = {"openai": "/v1", "anthropic": "", "gemini": "", "ollama": ""}
BRIDGE = "x-smolgate-vision-bridge"


def upstream_providers(urls: dict[str, str]) -> str:
    return "".join(
        f"  - name: up-{p}\n    protocol: {p}\n    base_url: {urls[p]}{BASE[p]}\n"
        + (f"    accounts: [{{api_key: {KEYS[p]}}}]\n" if KEYS[p] else "")
        for p in BASE
    ) + (  # the OpenAI fake with a key it refuses: a target that fails after the bridge ran
        f"  - name: up-badkey\n    protocol: openai\n    base_url: {urls['openai']}/v1\n"
        "    accounts: [{api_key: sk-wrong}]\n"
    )


def bridge_config(vlm: Path | None, urls: dict[str, str], extra_models: str = "", top: str = "") -> str:
    local = f"  - name: local\n    protocol: local\n    model: {vlm}\n" if vlm else ""
    return (
        f"providers:\n{local}{upstream_providers(urls)}"
        "models:\n"
        # declared blind
        "  - name: blind\n    targets: [{provider: up-openai, model: gpt-textonly, vision: false}]\n"
        # blind, learned from each upstream's own refusal
        + "".join(
            f"  - name: learn-{p}\n    targets: [{{provider: up-{p}, model: {p}-textonly}}]\n" for p in BASE
        )
        # a blind target whose account is refused, then a fallback that sees
        + "  - name: fallback\n    targets: [{provider: up-badkey, model: gpt-textonly, vision: false}]\n"
        "    fallbacks: [sees]\n"
        "  - name: sees\n    targets: [{provider: up-anthropic, model: claude-fake}]\n"
        "  - name: bridge-off\n    targets: [{provider: up-openai, model: gpt-textonly, vision: false}]\n"
        "    vision_bridge: {mode: off}\n"
        "  - name: one-image\n    targets: [{provider: up-openai, model: gpt-textonly, vision: false}]\n"
        "    vision_bridge: {max_images: 1, prompt: Read this.}\n"
        f"{extra_models}"
        "retry: {attempts: 4, deadline: 60}\n"
        "vision_bridge: {model: local, max_tokens: 8}\n" * bool(vlm) + top
    )


@pytest.fixture(scope="session")
def vlm_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path, _ = make_checkpoint("smolvlm2-256m", tmp_path_factory.mktemp("bridge-vlm") / "tiny-smolvlm2")
    return Path(path)


@pytest.fixture(scope="session")
def fakes() -> Iterator[dict[str, FakeUpstream]]:
    with running_fakes(KEYS) as f:
        yield f


@pytest.fixture(scope="session")
def gateway(vlm_path: Path, fakes: dict[str, FakeUpstream]) -> Iterator[GatewayServer]:
    with GatewayServer(bridge_config(vlm_path, {k: f.url for k, f in fakes.items()})) as gw:
        yield gw


def image(color: tuple[int, int, int], size: tuple[int, int] = (8, 6)) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture
def headers_seen(monkeypatch: pytest.MonkeyPatch) -> list[httpx.Headers]:
    """The response headers every SDK received, in order (they all speak through httpx or its fork httpx2)."""
    seen: list[httpx.Headers] = []
    for module in (httpx, importlib.import_module("httpx2")):  # openai, anthropic and google-genai use httpx2
        real = module.Client.send

        def send(self: Any, request: Any, *, _real: Any = real, **kw: Any) -> Any:
            resp = _real(self, request, **kw)
            seen.append(resp.headers)
            return resp

        monkeypatch.setattr(module.Client, "send", send)
    return seen
