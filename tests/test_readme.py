"""Every example in the README runs as written, against a real `smolgate serve` on 127.0.0.1.

Only the port changes (the README's 8000 becomes a free one). Client examples (python, curl) run against the
quick-start server: `smolgate serve` with no config, the embedded default model. Config examples (yaml) pass
`smolgate check`, and the main one also serves, its remote providers pointed at the fake upstreams.
A block that is not run here must be listed in NOT_RUN with the place that proves it.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.fakes.fleet import running_fakes
from tests.serve_process import free_port, start_serve

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
BLOCKS = re.findall(r"^```(\w*)\n(.*?)^```", README, re.M | re.S)
NOT_RUN = {  # a phrase of the block → why this test does not run it
    "bash scripts/serve.sh": "the quick start: tests/test_quickstart.py runs serve.sh; test.sh is CI's own command",
    "--ssl-certfile cert.pem": "binds every interface with the reader's certificate and keys",
    "bench/gateway.py": "benchmarks: minutes each, run by hand (bench/)",
    "smolgate tune HuggingFaceTB/": "needs SmolVLM2-256M from the Hugging Face hub (unreachable here): tests/tune runs "
    "`smolgate tune` with data of this shape on a tiny random SmolVLM2",
}
ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")  # a variable without a default: the reader sets it


def _blocks(lang: str, phrase: str = "") -> list[str]:
    return [body for kind, body in BLOCKS if kind == lang and phrase in body]


@contextlib.contextmanager
def _serve(args: list[str], env: dict[str, str] | None = None) -> Iterator[str]:
    proc, url = start_serve(
        None, *args, env={**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})}, timeout=300
    )
    try:
        yield url
    finally:
        proc.terminate()
        proc.wait(20)


@pytest.fixture(scope="module")
def quickstart() -> Iterator[str]:
    with _serve([]) as url:
        yield url


def _as_written(text: str, url: str) -> str:
    port = url.rsplit(":", 1)[1]
    return text.replace("127.0.0.1:8000", f"127.0.0.1:{port}").replace("localhost:8000", f"127.0.0.1:{port}")


def test_the_quick_start_is_two_commands():
    quick = README.split("## Quick start", 1)[1].split("```bash\n", 1)[1].split("```", 1)[0]
    commands = [line.split("#")[0].strip() for line in quick.splitlines() if line.strip()]
    assert commands == ["bash scripts/serve.sh", "bash scripts/test.sh"]


def test_every_block_is_run_or_says_why_not():
    for kind, body in BLOCKS:
        runs = kind in ("python", "yaml") or (
            kind == "bash" and body.lstrip().startswith(("curl ", "smolgate usage", "smolgate keys"))
        )
        assert runs or any(phrase in body for phrase in NOT_RUN), f"README block not tested:\n{body}"
    assert _blocks("python") and _blocks("yaml") and _blocks("bash", "curl ")


def test_python_examples_run_against_the_quick_start_server(quickstart: str):
    for body in _blocks("python"):
        out = subprocess.run(
            [sys.executable, "-c", _as_written(body, quickstart)], capture_output=True, text=True, timeout=600
        )
        assert out.returncode == 0, out.stderr
        printed = body.count("print(")
        lines = [line for line in out.stdout.splitlines() if line.strip()]
        assert len(lines) >= printed, out.stdout  # every print gave an answer (an answer may span lines)


def test_curl_examples_run_against_the_quick_start_server(quickstart: str):
    for body in _blocks("bash", "curl "):
        commands = re.sub(r"\\\n\s*", "", _as_written(body, quickstart)).splitlines()
        for cmd in filter(None, map(str.strip, commands)):
            out = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, timeout=600)
            assert out.returncode == 0 and out.stdout.strip(), (cmd, out.stderr)
            assert not re.search(r'"error"\s*:\s*[{"]', out.stdout), (
                cmd,
                out.stdout,
            )  # `"error": null` is fine


def test_usage_examples_run_as_written(tmp_path: Path):
    """`smolgate keys`, `audit` and `usage` lines use the data dir's store (created empty on first use), in the
    README's order; each exits 0 and prints."""
    blocks = _blocks("bash", "smolgate keys") + _blocks("bash", "smolgate usage")
    assert blocks
    env = {**os.environ, "SMOLGATE_HOME": str(tmp_path / "home")}
    bin_dir = Path(sys.executable).parent  # `smolgate` as installed next to this interpreter
    env["PATH"] = f"{bin_dir}{os.pathsep}{env['PATH']}"
    printed: dict[str, str] = {}
    for body in blocks:
        for cmd in filter(None, (line.split("  #")[0].strip() for line in body.splitlines())):
            out = subprocess.run(
                ["bash", "-c", cmd], capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path
            )
            assert out.returncode == 0, (cmd, out.stdout + out.stderr)
            assert (out.stdout + out.stderr).strip() or ">" in cmd, cmd
            printed[cmd.split(" --")[0]] = out.stdout
    assert (tmp_path / "usage.csv").read_text().startswith("group,requests,")
    audit = printed["smolgate audit"]  # the key's whole life, as the audit log saw it
    assert all(action in audit for action in ("key.create", "key.rotate", "key.revoke")), audit


def _env_for(body: str) -> dict[str, str]:
    return {name: f"sk-readme-{name.lower()}" for name in ENV.findall(body)}


def test_config_examples_pass_check(tmp_path: Path):
    for i, body in enumerate(_blocks("yaml")):
        path = tmp_path / f"readme{i}.yaml"
        path.write_text(body)
        out = subprocess.run(
            [sys.executable, "-m", "smolgate.cli", "check", "--config", str(path)],
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, **_env_for(body)},
        )
        assert out.returncode == 0, out.stdout + out.stderr


def test_the_main_config_example_serves_through_its_providers(tmp_path: Path):
    """The README's config, as written but for each remote base_url (pointed at a fake of its protocol)."""
    (body,) = _blocks("yaml", "# smolgate.yaml")  # the main example names its file
    env = _env_for(body)
    keys = {
        "openai": env["OPENAI_KEY_A"],
        "anthropic": env["ANTHROPIC_API_KEY"],
        "gemini": env["GEMINI_API_KEY"],
        "ollama": None,
    }
    with running_fakes(keys) as fakes:
        urls = {
            "https://api.openai.com/v1": fakes["openai"].url + "/v1",
            "http://10.0.0.5:8000/v1": fakes["openai"].url + "/v1",
            "https://api.anthropic.com": fakes["anthropic"].url,
            "https://generativelanguage.googleapis.com": fakes["gemini"].url,
            "http://127.0.0.1:11434": fakes["ollama"].url,
        }
        for real, fake in urls.items():
            assert real in body
            body = body.replace(real, fake)
        config = tmp_path / "smolgate.yaml"
        config.write_text(body.replace("redis://127.0.0.1:6379/0", f"redis://127.0.0.1:{free_port()}/0"))
        env["OPENAI_KEY_B"] = env["OPENAI_KEY_A"]  # both accounts of the one fake
        auth = {"authorization": f"Bearer {env['SMOLGATE_KEY']}"}
        with _serve(["--config", str(config)], env) as url:
            for model, fake in (("fast", "openai"), ("claude", "anthropic")):
                r = httpx.post(
                    url + "/v1/chat/completions",
                    json={"model": model, "messages": [{"role": "user", "content": "hi"}]},
                    headers=auth,
                    timeout=120,
                )
                assert r.status_code == 200, r.text
                assert r.json()["choices"][0]["message"]["content"]
                assert fakes[fake].requests, f"{model} did not reach the {fake} upstream"
            r = httpx.post(url + "/v1/chat/completions", json={"model": "fast", "messages": []}, timeout=30)
            assert r.status_code == 401  # the config's client keys are enforced
