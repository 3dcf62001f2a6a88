"""The real Claude Code CLI (npm @anthropic-ai/claude-code 2.1, installed by scripts/ensure_agents.sh) through the
gateway to each upstream protocol. A fake upstream that refuses what the real API refuses plays the model: it
answers the first turn with a call to Claude Code's own Write tool (AGENT_WRITE in tests/fakes/script.py), then a
final text once it sees the tool result. Claude Code must run its tool, write the file and exit 0.

What Claude Code sends and these runs exercise: `output_config.effort` on every request (alone on the title
request), `thinking: adaptive` on the agent turns, `cache_control` markers on system blocks and the latest turn,
`context_management`, `metadata.user_id`, an `anthropic-beta` header, a per-request billing line in `system`, and
a mid-conversation `role: "system"` message.
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
CLAUDE = ROOT / ".agents" / "node_modules" / ".bin" / "claude"
CLIENT_KEY = "sk-smolgate-client"
# Upstream models: the OpenAI, Gemini and Ollama ones do not reason and refuse reasoning settings, as gpt-4o,
# gemini-2.0-flash and llama3 do; the Claude one accepts thinking.
TARGETS = {
    "anthropic": "claude-fake",
    "openai": "gpt-fake",
    "gemini": "gemini-2.0-flash-fake",
    "ollama": "llama-fake",
}


@pytest.fixture(scope="module")
def claude() -> Path:
    return agent_binary("claude")


@pytest.fixture(scope="module")
def fakes():
    with fake_upstreams() as ups:
        yield ups


@pytest.fixture(scope="module")
def gateway(fakes):
    base = {
        "anthropic": fakes["anthropic"].url,
        "openai": fakes["openai"].url + "/v1",
        "gemini": fakes["gemini"].url,
        "ollama": fakes["ollama"].url,
    }
    keys = {"anthropic": "k-a", "openai": "k-o", "gemini": "k-g", "ollama": None}
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


def run_claude(
    claude: Path, gateway: GatewayServer, model: str, tmp: Path
) -> tuple[subprocess.CompletedProcess, Path]:
    work, home = tmp / "work", tmp / "home"
    work.mkdir()
    home.mkdir()
    target = work / "hello.txt"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "CLAUDE"))}
    env.update(
        HOME=str(home),
        ANTHROPIC_BASE_URL=gateway.url,
        ANTHROPIC_API_KEY=CLIENT_KEY,
        ANTHROPIC_MODEL=model,
        ANTHROPIC_SMALL_FAST_MODEL=model,
        ANTHROPIC_DEFAULT_HAIKU_MODEL=model,
        ANTHROPIC_DEFAULT_SONNET_MODEL=model,
        ANTHROPIC_DEFAULT_OPUS_MODEL=model,
        CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC="1",
        DISABLE_AUTOUPDATER="1",
        DISABLE_TELEMETRY="1",
        DISABLE_ERROR_REPORTING="1",
    )
    prompt = f"Create the file {target} containing a short greeting. AGENT_WRITE {target}"
    proc = subprocess.run(
        [str(claude), "-p", prompt, "--output-format", "json", "--allowedTools", "Write", "Bash"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    return proc, target


def assert_task_done(proc: subprocess.CompletedProcess, target: Path) -> dict:
    assert proc.returncode == 0, (
        f"claude exited {proc.returncode}: {proc.stdout[-2000:]} {proc.stderr[-2000:]}"
    )
    result = json.loads(proc.stdout)
    assert result["subtype"] == "success" and not result["is_error"], result
    assert target.read_text() == AGENT_TEXT + "\n"  # Claude Code ran its own Write tool
    assert "The tool said" in result["result"]  # and went on once the upstream saw the tool result
    return result


@pytest.mark.parametrize("upstream", list(TARGETS))
def test_claude_code_runs_its_tool_through_each_upstream(claude, gateway, fakes, upstream, tmp_path):
    fake = fakes[upstream]
    fake.reset()
    proc, target = run_claude(claude, gateway, f"via-{upstream}", tmp_path)
    assert_task_done(proc, target)
    bodies = [q.json for q in fake.requests if isinstance(q.json, dict)]
    tools = [sum(len(t.get("functionDeclarations") or [t]) for t in b.get("tools") or ()) for b in bodies]
    assert max(tools) > 5  # the agent turns reached this upstream, with Claude Code's tools
    if (
        upstream == "openai"
    ):  # refused once on the first agent turn, then never sent again (and never for hints)
        assert sum("reasoning_effort" in b for b in bodies) <= 1
    elif upstream == "ollama":
        assert sum(b.get("think") not in (None, False) for b in bodies) <= 1
    elif upstream == "gemini":
        assert sum("thinkingConfig" in (b.get("generationConfig") or {}) for b in bodies) <= 1


def test_claude_code_prompt_caching_reaches_anthropic(claude, gateway, fakes, tmp_path):
    fake = fakes["anthropic"]
    fake.reset()
    proc, target = run_claude(claude, gateway, "via-anthropic", tmp_path)
    result = assert_task_done(proc, target)
    agent = [q for q in fake.requests if isinstance(q.json, dict) and q.json.get("tools")]
    assert len(agent) >= 2
    for q in agent:
        body = q.json
        marks = sum("cache_control" in b for b in body["system"]) + sum(
            "cache_control" in b
            for m in body["messages"]
            if isinstance(m["content"], list)
            for b in m["content"]
        )
        assert marks >= 2, body["system"]  # Claude Code's own breakpoints, kept
        assert body["context_management"]["edits"]  # kept too
        assert body["thinking"] == {"type": "adaptive"} and body["output_config"]["effort"]
        assert body["system"][0]["text"].startswith("x-anthropic-billing-header:")
        assert "prompt-caching" in q.headers.get("anthropic-beta", "")
        assert "user_id" in body["metadata"]
    # the second agent turn read what the first wrote, and Claude Code saw those exact numbers
    reported = fake.usages
    assert any(u["cache_read_input_tokens"] > 0 for u in reported)
    assert result["usage"]["cache_read_input_tokens"] == sum(u["cache_read_input_tokens"] for u in reported)
    assert result["usage"]["cache_creation_input_tokens"] == sum(
        u["cache_creation_input_tokens"] for u in reported
    )
