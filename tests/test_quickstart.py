"""The README's main command, as a user runs it: `bash scripts/serve.sh` serves offline and answers curl."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]


def test_readme_main_command_serves_the_packaged_model_offline():
    readme = (ROOT / "README.md").read_text()
    assert "bash scripts/serve.sh" in readme and "bash scripts/test.sh" in readme
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "HF_HOME": str(ROOT / ".no-hf-cache"),
    }
    proc = subprocess.Popen(
        ["bash", "scripts/serve.sh", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 600  # a first run installs into the venv
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else "serve.sh exited"
            assert time.monotonic() < deadline, "server did not come up"
            time.sleep(0.5)
        out = subprocess.run(
            [
                "curl",
                "-s",
                f"http://127.0.0.1:{port}/v1/chat/completions",
                "-H",
                "content-type: application/json",
                "-d",
                '{"model":"default","max_tokens":20,"messages":[{"role":"user",'
                '"content":"What is the capital of France?"}]}',
            ],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert "Paris" in out.stdout, out.stdout
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            log = proc.communicate(timeout=20)[0]
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            log = ""
    assert "SmolLM2-135M-Instruct" in log  # the log line says which model serves
