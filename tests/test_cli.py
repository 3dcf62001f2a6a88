"""The real `smolgate serve` process with a config, and `smolgate accounts` reading it."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import httpx
import pytest

from tests.fakes.openai_upstream import OpenAIUpstream


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    up = OpenAIUpstream(api_key="sk-up").start()
    cfg = tmp_path_factory.mktemp("cli") / "smolgate.yaml"
    cfg.write_text(
        f"providers:\n  - name: up\n    protocol: openai\n    base_url: {up.url}/v1\n"
        "    accounts:\n      - {name: main-key, api_key: sk-up}\n      - {name: bad-key, api_key: sk-nope}\n"
        "models:\n  - name: fast\n    targets: [{provider: up, model: gpt-fake}]\n"
    )
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "smolgate.cli", "serve", "--config", str(cfg), "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            httpx.get(url + "/health", timeout=1)
            break
        except httpx.HTTPError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                raise RuntimeError(proc.stdout.read() if proc.stdout else "serve did not start")
            time.sleep(0.1)
    yield url
    proc.terminate()
    proc.wait(10)
    up.stop()


def test_serve_answers_and_accounts_reports_health(served):
    for _ in range(4):  # round robin reaches the bad key, which gets disabled; the client never notices
        r = httpx.post(
            served + "/v1/chat/completions",
            json={"model": "fast", "messages": [{"role": "user", "content": "cli hi"}]},
        )
        assert r.status_code == 200, r.text
    out = subprocess.run(
        [sys.executable, "-m", "smolgate.cli", "accounts", "--url", served],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    bad = next(line for line in lines if "bad-key" in line)
    good = next(line for line in lines if "main-key" in line)
    assert "disabled" in bad and "healthy" in good
    assert "sk-nope" not in out.stdout and "sk-up" not in out.stdout


def test_chat_one_shot_streams_an_answer_from_the_packaged_model():
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "smolgate.cli",
            "chat",
            "What is the capital of France?",
            "--max-tokens",
            "20",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    assert "Paris" in out.stdout


def test_chat_with_an_image_on_a_text_model_fails_clearly(tmp_path):
    from PIL import Image

    img = tmp_path / "a.png"
    Image.new("RGB", (4, 4)).save(img)
    out = subprocess.run(
        [sys.executable, "-m", "smolgate.cli", "chat", "what is this", "--image", str(img)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 1
    assert "does not accept images" in (out.stdout + out.stderr) and "Traceback" not in out.stderr


def test_pull_fails_clearly_offline(tmp_path):
    env = {**__import__("os").environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path)}
    out = subprocess.run(
        [sys.executable, "-m", "smolgate.cli", "pull", "HuggingFaceTB/SmolVLM2-256M-Video-Instruct"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert out.returncode == 1
    assert "pull failed" in out.stdout + out.stderr and "Traceback" not in out.stderr


def test_serve_refuses_a_configured_header_http_cannot_carry_without_a_trace(tmp_path):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(
        "providers:\n  - name: o\n    protocol: openai\n    base_url: http://127.0.0.1:9/v1\n"
        '    headers: {"x-org": "sk-hidden-value\\r\\nx-injected: 1"}\n'
        "models:\n  - name: m\n    targets: [{provider: o, model: x}]\n"
    )
    out = subprocess.run(
        [sys.executable, "-m", "smolgate.cli", "serve", "--config", str(cfg), "--port", "9"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2
    text = out.stdout + out.stderr
    assert "config error" in text and "x-org" in text
    assert "Traceback" not in text and "sk-hidden-value" not in text
