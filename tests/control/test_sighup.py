"""SIGHUP to a real `smolgate serve` re-reads its config: a new alias answers; a broken file is refused with a
log line and the old config keeps serving."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import httpx

from tests.fakes.openai_upstream import OpenAIUpstream
from tests.test_cli import free_port


def config_text(up: OpenAIUpstream, aliases: list[str]) -> str:
    models = "".join(f"  - name: {a}\n    targets: [{{provider: up, model: gpt-fake}}]\n" for a in aliases)
    return (
        f"providers:\n  - name: up\n    protocol: openai\n    base_url: {up.url}/v1\n"
        f"    accounts: [{{name: main, api_key: sk-up-123456}}]\nmodels:\n{models}"
    )


def answers(url: str, model: str) -> int:
    r = httpx.post(
        url + "/v1/chat/completions",
        json={"model": model, "messages": [{"role": "user", "content": "hi"}]},
        timeout=30,
    )
    return r.status_code


def wait_for(check, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + 30
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"never: {what}")
        time.sleep(0.05)


def test_sighup_reloads_the_config_and_refuses_a_broken_one(tmp_path):
    up = OpenAIUpstream(api_key="sk-up-123456").start()
    path = tmp_path / "smolgate.yaml"
    path.write_text(config_text(up, ["first"]))
    port = free_port()
    log = tmp_path / "serve.log"
    env = {**os.environ, "SMOLGATE_HOME": str(tmp_path / "home")}
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "smolgate.cli", "serve", "--config", str(path), "--port", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _up(url), "serve answers")
        assert answers(url, "first") == 200 and answers(url, "second") == 404
        path.write_text(config_text(up, ["first", "second"]))
        proc.send_signal(signal.SIGHUP)
        wait_for(lambda: answers(url, "second") == 200, "the new alias answers")
        path.write_text("providers: [this is not: valid")
        proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "config reload refused" in log.read_text(), "the refusal is logged")
        assert "not valid YAML" in log.read_text()
        assert answers(url, "second") == 200 and proc.poll() is None
    finally:
        proc.terminate()
        proc.wait(15)
        up.stop()
    assert "sk-up-123456" not in log.read_text()


def _up(url: str) -> bool:
    try:
        httpx.get(url + "/health", timeout=1)
        return True
    except httpx.HTTPError:
        return False
