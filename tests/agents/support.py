"""The real coding-agent CLIs, installed by scripts/ensure_agents.sh (bootstrap does it for the test run)."""

from __future__ import annotations

import contextlib
import subprocess
from pathlib import Path

import pytest

from tests.fakes.fleet import running_fakes
from tests.fakes.harness import FakeUpstream

ROOT = Path(__file__).resolve().parents[2]
BIN = ROOT / ".agents" / "node_modules" / ".bin"


def agent_binary(name: str) -> Path:
    """The CLI's path, installing the agents first if it is missing; a failed install fails the test."""
    path = BIN / name
    if not path.exists():
        proc = subprocess.run(
            ["bash", str(ROOT / "scripts" / "ensure_agents.sh")],
            check=False,
            timeout=600,
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0 or not path.exists():
            pytest.fail(f"{name} is not installed and scripts/ensure_agents.sh failed: {proc.stderr[-2000:]}")
    return path


def fake_upstreams() -> contextlib.AbstractContextManager[dict[str, FakeUpstream]]:
    """The four fakes, each refusing keys but its own (`k-o`, `k-a`, `k-g`; Ollama takes none)."""
    return running_fakes({"openai": "k-o", "anthropic": "k-a", "gemini": "k-g", "ollama": None})
