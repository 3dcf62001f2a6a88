"""Graceful shutdown of a real `smolgate serve` process: streams that end within the grace period end normally,
the rest get their protocol's in-stream error (not a cut connection), and the process exits 0 without a
traceback. Also the listen address and JSON log lines."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.observability.conftest import closed_port
from tests.observability.gated_upstream import GatedUpstream

GRACE = 2.0


class Serve:
    """`smolgate serve` in a subprocess, its stderr lines collected as they come."""

    def __init__(self, cfg: Path, *args: str) -> None:
        self.port = closed_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "src")}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "smolgate.cli", "serve", "-c", str(cfg), "--port", str(self.port), *args],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, text: str, deadline: float = 60) -> None:
        end = time.monotonic() + deadline
        while not any(text in line for line in self.lines):
            if time.monotonic() > end or self.proc.poll() is not None:
                self.proc.kill()
                raise AssertionError(f"never logged {text!r}:\n" + "\n".join(self.lines))
            time.sleep(0.02)

    def exit_code(self) -> int:
        code = self.proc.wait(60)
        self._reader.join(5)
        return code


def wait_until(cond, what: str, deadline: float = 30) -> None:  # type: ignore[no-untyped-def]
    end = time.monotonic() + deadline
    while not cond():
        if time.monotonic() > end:
            raise AssertionError(f"never happened: {what}")
        time.sleep(0.02)


@pytest.fixture(scope="module")
def gated():
    up = GatedUpstream().start()
    yield up
    up.stop()


def config(tmp_path: Path, up: GatedUpstream) -> Path:
    cfg = tmp_path / "smolgate.yaml"
    cfg.write_text(
        f"providers:\n  - name: up\n    protocol: openai\n    base_url: {up.url}/v1\n"
        "    accounts: [{name: main, api_key: sk-up}]\n"
        "models:\n  - name: slow\n    targets: [{provider: up, model: gated-model}]\n"
        f"shutdown_grace: {GRACE}\n"
    )
    return cfg


statuses: dict[str, int] = {}


def stream(url: str, path: str, body: dict, name: str, out: dict[str, bytes]) -> None:
    with httpx.stream("POST", url + path, json=body, timeout=60) as r:
        statuses[name] = r.status_code
        out[name] = r.read()


def test_sigterm_lets_streams_finish_within_grace_and_ends_the_rest_in_protocol(tmp_path, gated):
    srv = Serve(config(tmp_path, gated), "--log-format", "json")
    srv.wait_for("smolgate listening on")
    refused = httpx.post(srv.url + "/v1/chat/completions", json={"model": "nope", "messages": []})
    assert refused.status_code == 404
    out: dict[str, bytes] = {}
    chat = {"model": "slow", "stream": True}
    calls = [
        ("/v1/chat/completions", {**chat, "messages": [{"role": "user", "content": "short"}]}, "short"),
        ("/v1/chat/completions", {**chat, "messages": [{"role": "user", "content": "long"}]}, "openai"),
        (
            "/v1/messages",
            {**chat, "max_tokens": 20, "messages": [{"role": "user", "content": "long"}]},
            "anthropic",
        ),
        ("/v1/responses", {"model": "slow", "stream": True, "input": "long"}, "responses"),
        (
            "/v1/chat/completions",
            {"model": "slow", "messages": [{"role": "user", "content": "long"}]},
            "whole",
        ),
    ]
    threads = [threading.Thread(target=stream, args=(srv.url, *c, out), daemon=True) for c in calls]
    for t in threads:
        t.start()
    wait_until(lambda: gated.started.get("short") == 1 and gated.started.get("long") == 4, "5 requests open")
    srv.proc.send_signal(signal.SIGTERM)
    srv.wait_for("shutting down: waiting for 5 request(s)")
    with pytest.raises(httpx.ConnectError):  # no longer accepting
        httpx.get(srv.url + "/health", timeout=5)
    gated.open("short")  # this one completes during the grace period
    for t in threads:
        t.join(60)
    assert srv.exit_code() == 0

    short = out["short"].decode()
    assert '"content": "last"' in short or '"content":"last"' in short
    assert short.rstrip().endswith("data: [DONE]")
    assert '"error"' not in short

    oai = out["openai"].decode()  # the OpenAI in-stream error, which the SDK raises on
    events = [json.loads(line[6:]) for line in oai.splitlines() if line.startswith("data: {")]
    assert "first " in [e["choices"][0]["delta"].get("content") for e in events[:-1]]
    assert "shutting down" in events[-1]["error"]["message"]

    ant = out["anthropic"].decode()  # Anthropic's `event: error`
    assert ant.startswith("event: message_start")
    assert "event: error" in ant and "shutting down" in ant
    assert "overloaded_error" in ant

    resp = out["responses"].decode()  # the Responses API's `error` then `response.failed`
    assert "event: error" in resp and "event: response.failed" in resp and "shutting down" in resp

    whole = json.loads(out["whole"])  # not yet answered: a 503 in the protocol's error shape
    assert whole["error"]["type"] and "shutting down" in whole["error"]["message"]
    assert statuses["whole"] == 503

    # the log is JSON lines only, each with time/level/logger/message; the access lines carry their fields
    records = [json.loads(line) for line in srv.lines]
    assert all({"time", "level", "logger", "message"} <= r.keys() for r in records)
    assert any(r["message"] == f"smolgate listening on http://127.0.0.1:{srv.port}" for r in records)
    # a line logged while serving a request carries its id (here: the refusal's reason)
    rid = refused.headers["x-request-id"]
    assert any(r["logger"] == "smolgate.server" and r.get("request_id") == rid for r in records)
    access = [r for r in records if r["logger"] == "smolgate.access" and r["request_id"] != rid]
    assert len(access) == 5
    assert {r["request_id"] for r in access} == {r["request_id"] for r in access if r["request_id"]}
    assert sorted((r["path"], r["error_kind"] or "") for r in access) == [
        ("/v1/chat/completions", ""),
        ("/v1/chat/completions", "overloaded"),
        ("/v1/chat/completions", "overloaded"),
        ("/v1/messages", "overloaded"),
        ("/v1/responses", "overloaded"),
    ]
    assert all(r["alias"] == "slow" and r["account"] == "main" and r["provider"] == "up" for r in access)
    assert not any("Traceback" in line for line in srv.lines)
    # the ended streams' upstream connections were closed, not left running
    gated.open("long")
    wait_until(lambda: gated.disconnects == 3, "the upstream sees the ended streams gone")
    assert gated.started["long"] == 4  # (nobody retried)


def test_ctrl_c_stops_cleanly_without_a_traceback(tmp_path, gated):
    srv = Serve(config(tmp_path, gated))
    srv.wait_for(f"smolgate listening on http://127.0.0.1:{srv.port}")
    assert httpx.get(srv.url + "/health", headers={"x-request-id": "hc-1"}).status_code == 200
    srv.wait_for("GET /health 200")  # the text access line
    assert any(line.endswith("(hc-1)") and " INFO " in line for line in srv.lines)
    srv.proc.send_signal(signal.SIGINT)
    assert srv.exit_code() == 0
    text = "\n".join(srv.lines)
    assert "Traceback" not in text and "KeyboardInterrupt" not in text


def test_a_stderr_nobody_reads_does_not_stall_the_server(tmp_path, gated):
    """A line per request into a pipe nobody empties: the pipe fills (64 KiB), the writer thread waits, lines
    are dropped — and requests keep being answered; the process still exits."""
    cfg = config(tmp_path, gated)
    port = closed_port()
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "src")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "smolgate.cli", "serve", "-c", str(cfg), "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,  # never read until the end
        env=env,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: _up(url), "serve answers", 60)
        with httpx.Client(base_url=url, timeout=30) as client:
            for i in range(1500):  # ~150 bytes of access line each: far more than a pipe holds
                assert client.get("/health", headers={"x-request-id": f"fill-{i}"}).status_code == 200
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0
    assert b"(fill-0)" in err  # the lines that fitted were written


def _up(url: str) -> bool:
    try:
        return httpx.get(url + "/health", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False
