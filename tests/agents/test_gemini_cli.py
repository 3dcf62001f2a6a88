"""The real Gemini CLI (npm @google/gemini-cli 0.61, from scripts/ensure_agents.sh) through the gateway.

Gemini CLI talks to a custom endpoint through the Gen AI SDK's GOOGLE_GEMINI_BASE_URL with GEMINI_API_KEY as
the key (the settings file selects API-key auth: 0.61 refuses the "gateway" auth type the variable alone
implies in non-interactive mode). It runs headless with `-p`, `--yolo` (tools run without asking) and
`-o json`.

The gateway serves the CLI's own default model name (gemini-2.5-pro), so the CLI sends what it sends for it: a
thinkingConfig, its tool declarations as parametersJsonSchema, functionResponse turns. A fake upstream that
refuses what the real API refuses (the fake Gemini model cannot think; an OpenAI one refuses reasoning_effort;
results must answer their calls) plays the model: it calls the CLI's own write_file tool (AGENT_WRITE in
tests/fakes/script.py), then answers with text once it sees the result. The CLI must write the file and
exit 0.

Over-long prompts on the local engine used to answer 200 and then an in-stream error, and the CLI exited 0
with nothing: it must now fail with the API's own INVALID_ARGUMENT token-count error.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.agents.support import agent_binary, fake_upstreams
from tests.fakes.script import AGENT_TEXT
from tests.gateway_server import GatewayServer

pytestmark = pytest.mark.agents

ROOT = Path(__file__).resolve().parents[2]
GEMINI = ROOT / ".agents" / "node_modules" / ".bin" / "gemini"
CLIENT_KEY = "sk-smolgate-client"
CLI_MODEL = "gemini-2.5-pro"  # the CLI's default: it sends thinking settings for it
# Upstream models that do not reason and refuse reasoning settings, as gpt-4o, gemini-2.0-flash and llama3 do.
TARGETS = {
    "openai": "gpt-fake",
    "anthropic": "claude-fake",
    "gemini": "gemini-2.0-flash-fake",
    "ollama": "llama-fake",
}
KEYS = {"openai": "k-o", "anthropic": "k-a", "gemini": "k-g", "ollama": None}


@pytest.fixture(scope="module")
def gemini() -> Path:
    return agent_binary("gemini")


@pytest.fixture(scope="module")
def fakes():
    with fake_upstreams() as ups:
        yield ups


def gateway_for(upstream: str, fake_url: str) -> GatewayServer:
    base = fake_url + "/v1" if upstream == "openai" else fake_url
    account = f", accounts: [{{api_key: {KEYS[upstream]}}}]" if KEYS[upstream] else ""
    cfg = (
        f"providers:\n  - {{name: up, protocol: {upstream}, base_url: '{base}', "
        f"timeouts: {{first_byte: 15, idle: 15}}{account}}}\n"
        f"models:\n  - {{name: {CLI_MODEL}, targets: [{{provider: up, model: {TARGETS[upstream]}}}]}}\n"
        f"keys: [{{key: {CLIENT_KEY}}}]\nretry: {{attempts: 2, deadline: 30}}\n"
    )
    return GatewayServer(cfg)


def run_gemini(
    gemini: Path, base_url: str, prompt: str, tmp: Path, model: str = CLI_MODEL, timeout: float = 120
) -> subprocess.CompletedProcess:
    work, home = tmp / "work", tmp / "home"
    work.mkdir(exist_ok=True)
    (home / ".gemini").mkdir(parents=True, exist_ok=True)
    (home / ".gemini" / "settings.json").write_text(
        json.dumps(
            {
                "security": {"auth": {"selectedType": "gemini-api-key"}, "folderTrust": {"enabled": False}},
                "privacy": {"usageStatisticsEnabled": False},
                "general": {"disableAutoUpdate": True, "disableUpdateNag": True},
            }
        )
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GEMINI", "GOOGLE"))}
    env.update(
        PWD=str(work),
        HOME=str(home),
        XDG_CONFIG_HOME=str(home / ".config"),
        XDG_CACHE_HOME=str(home / ".cache"),
        GEMINI_API_KEY=CLIENT_KEY,
        GOOGLE_GEMINI_BASE_URL=base_url,
        NO_COLOR="1",
    )
    return subprocess.run(
        [str(gemini), "-p", prompt, "-m", model, "--yolo", "-o", "json"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        check=False,
    )


@pytest.mark.parametrize("upstream", list(TARGETS))
def test_gemini_cli_runs_its_write_file_tool_through_each_upstream(gemini, fakes, upstream, tmp_path):
    fake = fakes[upstream]
    fake.reset()
    target = tmp_path / "work" / "hello.txt"
    with gateway_for(upstream, fake.url) as gw:
        proc = run_gemini(
            gemini, gw.url, f"Create the file {target} with a greeting. AGENT_WRITE {target}", tmp_path
        )
    assert proc.returncode == 0, (
        f"gemini exited {proc.returncode}: {proc.stdout[-2000:]} {proc.stderr[-2000:]}"
    )
    assert target.read_text() == AGENT_TEXT + "\n"  # the CLI ran its own write_file tool
    out = json.loads(proc.stdout)
    assert "The tool said" in out["response"]  # and went on once the upstream saw the tool result
    assert out["stats"]["tools"]["byName"]["write_file"]["success"] == 1
    bodies = [q.json for q in fake.requests if isinstance(q.json, dict)]
    assert len(bodies) >= 2 and any(b.get("tools") for b in bodies)  # the agent turns reached this upstream


def test_gemini_cli_fails_plainly_when_the_prompt_exceeds_the_local_models_context(gemini, tmp_path):
    """Its ~8k-token system prompt against a 640-token local model: a non-zero exit naming the token counts as
    the Gemini API answers, instead of exit 0 with an empty answer."""
    sys.path.insert(0, str(ROOT / "tests" / "engine"))
    from checkpoints import make_checkpoint

    path, _ = make_checkpoint("smollm2-text", tmp_path / "tiny")
    cfg = json.loads((path / "config.json").read_text())
    cfg["max_position_embeddings"] = 640
    (path / "config.json").write_text(json.dumps(cfg))
    gcfg = (
        f"providers:\n  - {{name: local, protocol: local, model: '{path}'}}\n"
        f"models:\n  - {{name: tiny, targets: [{{provider: local, model: default}}]}}\n"
        f"keys: [{{key: {CLIENT_KEY}}}]\n"
    )
    with GatewayServer(gcfg) as gw:
        proc = run_gemini(gemini, gw.url, "Say hello.", tmp_path, model="tiny")
    assert proc.returncode != 0, proc.stdout
    report = proc.stderr[proc.stderr.rindex('{\n  "session_id"') :]  # -o json puts the error report on stderr
    err = json.loads(report)["error"]
    assert "exceeds the maximum number of tokens allowed (640)" in err["message"] and err["code"] == 400
