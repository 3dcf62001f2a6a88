"""The real opencode CLI (npm opencode-ai 1.18, installed by scripts/ensure_agents.sh) through the gateway.

`opencode run` reads a config file (OPENCODE_CONFIG) that defines a custom provider pointing at the gateway,
in each of the three ways opencode users do it: the Vercel AI SDK's openai-compatible, anthropic and google
packages (bundled in opencode). HOME and the XDG directories live in the test's temp dir; models.dev, LSP and
plugin downloads are switched off. opencode sends a title request first, then the agent turns with its tools.

A fake upstream that refuses what the real API refuses plays the model: it calls opencode's own write tool
(AGENT_WRITE in tests/fakes/script.py), then answers with text once it sees the result. opencode must write
the file and exit 0, for every client protocol × upstream protocol.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.agents.support import agent_binary, fake_upstreams
from tests.fakes.script import AGENT_TEXT
from tests.gateway_server import GatewayServer

pytestmark = pytest.mark.agents

ROOT = Path(__file__).resolve().parents[2]
OPENCODE = ROOT / ".agents" / "node_modules" / ".bin" / "opencode"
CLIENT_KEY = "sk-smolgate-client"
TARGETS = {
    "openai": "gpt-fake",
    "anthropic": "claude-fake",
    "gemini": "gemini-2.0-flash-fake",
    "ollama": "llama-fake",
}
KEYS = {"openai": "k-o", "anthropic": "k-a", "gemini": "k-g", "ollama": None}
# How an opencode user points each AI SDK provider package at a gateway (the base URL has the API version).
CLIENTS = {"openai-compatible": "/v1", "anthropic": "/v1", "google": "/v1beta"}


@pytest.fixture(scope="module")
def opencode() -> Path:
    return agent_binary("opencode")


@pytest.fixture(scope="module")
def fakes():
    with fake_upstreams() as ups:
        yield ups


@pytest.fixture(scope="module")
def gateway(fakes):
    base = {p: f.url + "/v1" if p == "openai" else f.url for p, f in fakes.items()}
    providers = "".join(
        f"  - {{name: up-{p}, protocol: {p}, base_url: '{base[p]}', timeouts: {{first_byte: 15, idle: 15}}"
        + (f", accounts: [{{api_key: {KEYS[p]}}}]" if KEYS[p] else "")
        + "}\n"
        for p in TARGETS
    )
    models = "".join(
        f"  - {{name: via-{p}, targets: [{{provider: up-{p}, model: {m}}}]}}\n" for p, m in TARGETS.items()
    )
    with GatewayServer(
        f"providers:\n{providers}models:\n{models}keys: [{{key: {CLIENT_KEY}}}]\n"
        "retry: {attempts: 2, deadline: 30}\n"
    ) as gw:
        yield gw


def run_opencode(
    opencode: Path, gateway: GatewayServer, client: str, model: str, prompt: str, tmp: Path
) -> subprocess.CompletedProcess:
    work, home = tmp / "work", tmp / "home"
    work.mkdir(exist_ok=True)
    home.mkdir(exist_ok=True)
    config = {
        "$schema": "https://opencode.ai/config.json",
        "autoupdate": False,
        "share": "disabled",
        "permission": {"edit": "allow", "bash": "allow", "webfetch": "deny"},
        "provider": {
            "smolgate": {
                "npm": f"@ai-sdk/{client}",
                "name": "smolgate",
                "options": {"baseURL": gateway.url + CLIENTS[client], "apiKey": CLIENT_KEY},
                "models": {model: {"name": model}},
            }
        },
    }
    (tmp / "opencode.json").write_text(json.dumps(config))
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("OPENCODE", "OPENAI", "ANTHROPIC", "GOOGLE"))
    }
    # PWD too: opencode takes its project directory from it, not from the process's working directory
    env.update(
        PWD=str(work),
        HOME=str(home),
        XDG_CONFIG_HOME=str(home / ".config"),
        XDG_DATA_HOME=str(home / ".local" / "share"),
        XDG_CACHE_HOME=str(home / ".cache"),
        XDG_STATE_HOME=str(home / ".local" / "state"),
        OPENCODE_CONFIG=str(tmp / "opencode.json"),
        OPENCODE_DISABLE_AUTOUPDATE="1",
        OPENCODE_DISABLE_MODELS_FETCH="1",
        OPENCODE_DISABLE_LSP_DOWNLOAD="1",
        OPENCODE_DISABLE_DEFAULT_PLUGINS="1",
        OPENCODE_DISABLE_SHARE="1",
        NO_COLOR="1",
    )
    return subprocess.run(
        [str(opencode), "run", "-m", f"smolgate/{model}", prompt],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=150,
        stdin=subprocess.DEVNULL,
        check=False,
    )


@pytest.mark.parametrize("upstream", list(TARGETS))
@pytest.mark.parametrize("client", list(CLIENTS))
def test_opencode_runs_its_write_tool_through_each_protocol_pair(
    opencode, gateway, fakes, client, upstream, tmp_path
):
    fake = fakes[upstream]
    fake.reset()
    target = tmp_path / "work" / "hello.txt"
    # opencode quotes the message it was given: the path must not be its last word
    proc = run_opencode(
        opencode,
        gateway,
        client,
        f"via-{upstream}",
        f"AGENT_WRITE {target} : create this file with a short greeting.",
        tmp_path,
    )
    assert proc.returncode == 0, (
        f"opencode exited {proc.returncode}: {proc.stdout[-2000:]} {proc.stderr[-2000:]}"
    )
    assert target.read_text() == AGENT_TEXT + "\n"  # opencode ran its own write tool
    assert "The tool said" in proc.stdout  # and went on once the upstream saw the tool result
    assert "Error" not in proc.stderr, proc.stderr[-2000:]
    agent_turns = [q.json for q in fake.requests if isinstance(q.json, dict) and q.json.get("tools")]
    assert len(agent_turns) >= 2  # the call and the turn after its result both reached this upstream
