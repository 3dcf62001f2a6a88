"""The gateway installs and runs without the engine: with torch, PIL and numpy made unimportable, `smolgate.server`
imports, a gateway serves a remote OpenAI-compatible route, and a local provider says what to install.

Each check runs in a fresh interpreter whose meta path refuses the engine's dependencies, so nothing imported
earlier in the test process can hide an import.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.fakes.openai_upstream import OpenAIUpstream

REPO = Path(__file__).resolve().parents[1]
BLOCKER = """
import importlib.abc, sys
BLOCKED = {"torch", "PIL", "numpy"}

class Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"{name} is blocked in this test", name=name)
        return None

sys.meta_path.insert(0, Blocker())
"""


def run(script: str, *args: str) -> dict:  # type: ignore[type-arg]
    """Run BLOCKER + script in a new interpreter (repo root on sys.path) -> the JSON it prints last."""
    # without the engine's process settings (this test process has them): a change would show
    tuned = ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY", "THP_MEM_ALLOC_ENABLE", "SMOLGATE_PROCESS_DEFAULTS")
    env = {k: v for k, v in os.environ.items() if k not in tuned}
    proc = subprocess.run(
        [sys.executable, "-c", BLOCKER + script, *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,  # the assertion below shows stderr
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def test_importing_the_gateway_needs_no_engine_and_leaves_the_environment_alone() -> None:
    got = run("""
import json, os, sys
before = dict(os.environ)
import smolgate
import smolgate.server
import smolgate.cli
print(json.dumps({
    "env_unchanged": dict(os.environ) == before,
    "loaded": sorted(m for m in ("torch", "PIL", "numpy") if m in sys.modules),
}))
""")
    assert got == {"env_unchanged": True, "loaded": []}


def test_gateway_serves_a_remote_route_without_torch() -> None:
    upstream = OpenAIUpstream(api_key="sk-up").start()  # type: ignore[arg-type]
    try:
        got = run(
            """
import json, sys
import httpx
sys.path.insert(0, ".")
from tests.gateway_server import GatewayServer

cfg = (
    "providers:\\n  - name: up\\n    protocol: openai\\n"
    f"    base_url: {sys.argv[1]}/v1\\n    accounts: [{{api_key: sk-up}}]\\n"
    "models:\\n  - name: remote\\n    targets: [{provider: up, model: gpt-fake}]\\n"
)
body = {"model": "remote", "messages": [{"role": "user", "content": "hello there"}]}
with GatewayServer(cfg) as gw:
    plain = httpx.post(gw.url + "/v1/chat/completions", json=body, timeout=30)
    streamed = httpx.post(gw.url + "/v1/chat/completions", json=body | {"stream": True}, timeout=30)
print(json.dumps({
    "status": [plain.status_code, streamed.status_code],
    "text": plain.json()["choices"][0]["message"]["content"],
    "stream_has_text": "hello" in streamed.text and "[DONE]" in streamed.text,
    "loaded": sorted(m for m in ("torch", "PIL", "numpy") if m in sys.modules),
}))
""",
            upstream.url,
        )
    finally:
        upstream.stop()
    assert got["status"] == [200, 200]
    assert got["text"].startswith("You said: hello there")  # the fake upstream's answer, through the gateway
    assert got["stream_has_text"] and got["loaded"] == []


def test_local_provider_without_the_engine_names_the_extra_to_install() -> None:
    got = run("""
import asyncio, json
from smolgate.config import parse_config
from smolgate.providers.local import LocalProvider

cfg = parse_config(
    "providers:\\n  - name: local\\n    protocol: local\\n    model: /nonexistent\\n"
    "models:\\n  - name: m\\n    targets: [{provider: local, model: default}]\\n"
)
try:
    asyncio.run(LocalProvider(cfg.providers[0]).start())
    print(json.dumps({"error": None}))
except RuntimeError as exc:
    print(json.dumps({"error": str(exc)}))
""")
    assert got["error"] is not None and "pip install 'smolgate[engine]'" in got["error"]
    assert "torch" in got["error"]


def test_the_serve_checks_tune_the_process_before_torch_loads() -> None:
    """`smolgate serve` checks the engine imports before the engine starts; that first torch import must already
    see the engine's OpenMP settings (libgomp reads them once, when torch loads it)."""
    code = (
        "import os, sys\n"
        "os.environ.pop('GOMP_SPINCOUNT', None); os.environ.pop('SMOLGATE_PROCESS_DEFAULTS', None)\n"
        "seen = {}\n"
        "import importlib\n"
        "_imp = importlib.import_module\n"
        "def imp(name, *a):\n"
        "    if name == 'torch' and 'torch' not in sys.modules:\n"
        "        seen['spin'] = os.environ.get('GOMP_SPINCOUNT')\n"
        "    return _imp(name, *a)\n"
        "importlib.import_module = imp\n"
        "from smolgate.cli_checks import engine_missing\n"
        "assert engine_missing() is None\n"
        "print(seen)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.strip() == "{'spin': '30000'}", out.stdout + out.stderr
