"""The real Codex CLI (npm @openai/codex 0.171, installed by scripts/ensure_agents.sh) through the gateway's
Responses API to each upstream protocol. Codex is configured with a custom model provider (wire_api =
"responses") pointing at the gateway. A fake upstream that refuses what the real API refuses plays the model:
it answers the first turn with a call to Codex's own shell tool (`exec_command`, AGENT_WRITE in
tests/fakes/script.py), then a final text once it sees the tool output. Codex must run the command, the file
must exist, and `codex exec` must exit 0.

What Codex sends and these runs exercise: a `namespace` tool (multi_agent_v1), a hosted `web_search` tool,
`developer` messages, `reasoning.summary` without an effort, `include: ["reasoning.encrypted_content"]`,
`store: false`, `prompt_cache_key` and `client_metadata`, and input items with ids.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.agents.support import agent_binary, fake_upstreams
from tests.fakes.script import AGENT_TEXT
from tests.gateway_server import GatewayServer

pytestmark = pytest.mark.agents
ROOT = Path(__file__).resolve().parents[2]
CODEX = ROOT / ".agents" / "node_modules" / ".bin" / "codex"
CLIENT_KEY = "sk-smolgate-codex"
# Upstream models that do not reason (and refuse reasoning settings), as gpt-4o, gemini-2.0-flash, llama3 do.
TARGETS = {
    "openai-responses": "gpt-fake",
    "openai": "gpt-fake",
    "anthropic": "claude-fake",
    "gemini": "gemini-2.0-flash-fake",
    "ollama": "llama-fake",
}


@pytest.fixture(scope="module")
def codex() -> Path:
    return agent_binary("codex")


@pytest.fixture(scope="module")
def fakes():
    with fake_upstreams() as ups:
        yield {**ups, "openai-responses": ups["openai"]}


@pytest.fixture(scope="module")
def gateway(fakes):
    base = {
        "anthropic": fakes["anthropic"].url,
        "openai": fakes["openai"].url + "/v1",
        "openai-responses": fakes["openai"].url + "/v1",
        "gemini": fakes["gemini"].url,
        "ollama": fakes["ollama"].url,
    }
    keys = {"anthropic": "k-a", "openai": "k-o", "openai-responses": "k-o", "gemini": "k-g", "ollama": None}
    providers = "".join(
        f"  - {{name: up-{p}, protocol: {p}, base_url: '{base[p]}', timeouts: {{first_byte: 15, idle: 15}}"
        + (f", accounts: [{{api_key: {keys[p]}}}]" if keys[p] else "")
        + "}\n"
        for p in base
    )
    models = "".join(
        f"  - {{name: via-{p}, targets: [{{provider: up-{p}, model: {m}}}]}}\n" for p, m in TARGETS.items()
    )
    cfg = f"providers:\n{providers}models:\n{models}keys: [{{key: {CLIENT_KEY}}}]\nretry: {{attempts: 2, deadline: 30}}\n"
    with GatewayServer(cfg) as gw:
        yield gw


def codex_config(gateway: GatewayServer, model: str, effort: str | None) -> str:
    top = f'model = "{model}"\nmodel_provider = "smolgate"\n'
    if effort:
        top += f'model_reasoning_effort = "{effort}"\n'
    return (
        f'{top}\n[model_providers.smolgate]\nname = "smolgate"\n'
        f'base_url = "{gateway.url}/v1"\nwire_api = "responses"\nenv_key = "SMOLGATE_API_KEY"\n'
        "request_max_retries = 0\nstream_max_retries = 0\n"
    )


def run_codex(
    codex: Path, gateway: GatewayServer, model: str, tmp: Path, effort: str | None = None
) -> tuple[subprocess.CompletedProcess, Path, Path]:
    work, home = tmp / "work", tmp / "home"
    work.mkdir()
    (home / ".codex").mkdir(parents=True)
    (home / ".codex" / "config.toml").write_text(codex_config(gateway, model, effort))
    target, last = work / "hello.txt", tmp / "last-message.txt"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "CODEX_"))}
    env.update(HOME=str(home), CODEX_HOME=str(home / ".codex"), SMOLGATE_API_KEY=CLIENT_KEY, NO_COLOR="1")
    prompt = f"Create the file {target} containing a short greeting. AGENT_WRITE {target}"
    proc = subprocess.run(
        [
            str(codex),
            "exec",
            "--skip-git-repo-check",
            "--ephemeral",
            "--color",
            "never",
            "-s",
            "danger-full-access",
            "-C",
            str(work),
            "-o",
            str(last),
            prompt,
        ],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    return proc, target, last


@pytest.mark.parametrize("upstream", list(TARGETS))
@pytest.mark.parametrize(
    "effort", [None, "high"]
)  # Codex's model_reasoning_effort, to models that do not reason
def test_codex_runs_its_shell_tool_through_each_upstream(codex, gateway, fakes, upstream, effort, tmp_path):
    fake = fakes[upstream]
    fake.reset()
    proc, target, last = run_codex(codex, gateway, f"via-{upstream}", tmp_path, effort)
    assert proc.returncode == 0, (
        f"codex exited {proc.returncode}: {proc.stdout[-2000:]} {proc.stderr[-3000:]}"
    )
    assert target.read_text() == AGENT_TEXT + "\n"  # Codex ran its own exec_command
    assert "The tool said" in last.read_text()  # and went on once the upstream saw the command's output
    bodies = [q.json for q in fake.requests if isinstance(q.json, dict)]
    assert len(bodies) >= 2  # the tool turn and the turn after it reached this upstream
    if upstream == "openai-responses":  # passed through: the namespace and hosted tools as Codex sent them
        types = {t["type"] for t in bodies[0]["tools"]}
        assert {"namespace", "web_search", "function"} <= types
