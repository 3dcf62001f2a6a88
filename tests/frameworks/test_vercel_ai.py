"""The Vercel AI SDK (`ai` with @ai-sdk/openai Responses and Chat, @ai-sdk/openai-compatible, @ai-sdk/anthropic,
@ai-sdk/google) through the gateway, against every upstream protocol. tests/frameworks/js/matrix.mjs runs every
cell in one node process (installed by scripts/ensure_js_frameworks.sh); each cell is one test here."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.frameworks import cases as c
from tests.frameworks.stack import CLIENT_KEY, UPSTREAMS

ROOT = Path(__file__).resolve().parents[2]
JS = ROOT / "tests" / "frameworks" / "js"
PROVIDERS = ("openai-responses", "openai-chat", "openai-compatible", "anthropic", "google")


@pytest.fixture(scope="module")
def results(stack) -> dict[tuple[str, str, str], dict]:
    if shutil.which("node") is None or not (JS / "node_modules" / "ai").exists():
        proc = subprocess.run(
            ["bash", str(ROOT / "scripts" / "ensure_js_frameworks.sh")],
            check=False,
            timeout=600,
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0:
            pytest.fail(
                f"the AI SDK is not installed and scripts/ensure_js_frameworks.sh failed: {proc.stderr[-2000:]}"
            )
    run = subprocess.run(
        ["node", "matrix.mjs", stack.url, CLIENT_KEY],
        cwd=JS,
        capture_output=True,
        text=True,
        check=False,
        timeout=240,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    rows = [json.loads(line) for line in run.stdout.splitlines() if line.startswith("{")]
    return {(r["provider"], r["upstream"], r["case"]): r for r in rows}


@pytest.mark.parametrize("case", c.CASES)
@pytest.mark.parametrize("upstream", UPSTREAMS)
@pytest.mark.parametrize("provider", PROVIDERS)
def test_cell(stack, results, provider, upstream, case):
    row = results.get((provider, upstream, case))
    assert row is not None, "the cell did not run"
    assert row["ok"], row["detail"]
    if case == "reasoning":  # the SDK's `reasoning: 'high'` reached the upstream on every turn of the loop
        tag = f"(vercel-{provider})"
        path = {"openai": "/v1/chat/completions", "openai-responses": "/v1/responses"}.get(upstream)
        bodies = [
            r.json
            for r in stack.fakes[upstream].requests
            if isinstance(r.json, dict) and tag in json.dumps(r.json) and (path is None or r.path == path)
        ]
        assert len(bodies) == 2 and all(c.reasons(upstream, b) for b in bodies), bodies
