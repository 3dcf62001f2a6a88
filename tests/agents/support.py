"""The real coding-agent CLIs, installed by scripts/ensure_agents.sh (bootstrap does it for the test run)."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakes.anthropic_upstream import AnthropicUpstream
from tests.fakes.gemini_upstream import GeminiUpstream
from tests.fakes.harness import FakeUpstream
from tests.fakes.ollama_upstream import OllamaUpstream
from tests.fakes.openai_upstream import OpenAIUpstream

ROOT = Path(__file__).resolve().parents[2]
BIN = ROOT / ".agents" / "node_modules" / ".bin"


def agent_binary(name: str) -> Path:
    """The CLI's path, installing the agents first if it is missing; a failed install fails the test."""
    path = BIN / name
    if not path.exists():
        proc = subprocess.run(["bash", str(ROOT / "scripts" / "ensure_agents.sh")], check=False, timeout=600,
                              capture_output=True, text=True)
        if proc.returncode != 0 or not path.exists():
            pytest.fail(f"{name} is not installed and scripts/ensure_agents.sh failed: {proc.stderr[-2000:]}")
    return path


@contextlib.contextmanager
def fake_upstreams() -> Iterator[dict[str, FakeUpstream]]:
    """One fake per upstream protocol, each refusing keys but its own (`k-o`, `k-a`, `k-g`; Ollama takes none)."""
    ups: dict[str, FakeUpstream] = {"openai": OpenAIUpstream(api_key="k-o"),
                                    "anthropic": AnthropicUpstream(api_key="k-a"),
                                    "gemini": GeminiUpstream(api_key="k-g"), "ollama": OllamaUpstream()}
    for f in ups.values():
        f.start()
    try:
        yield ups
    finally:
        for f in ups.values():
            f.stop()
