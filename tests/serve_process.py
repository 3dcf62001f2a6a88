"""`smolgate serve` as a real subprocess on a free loopback port, for tests of what only the CLI does (signals,
exit codes, the bind, durability across kill -9)."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def start_serve(
    config: Path | None, *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> tuple[subprocess.Popen[str], str]:
    """Start `smolgate serve [--config config] --port P *args` (stdout and stderr together in `proc.stdout`) and
    wait until it answers `/health` (any answer); its output is raised if it exits or never answers."""
    port = free_port()
    cmd = [sys.executable, "-m", "smolgate.cli", "serve", "--port", str(port), *args]
    if config is not None:
        cmd += ["--config", str(config)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while True:
        try:
            httpx.get(url + "/health", timeout=2)
            return proc, url
        except httpx.HTTPError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                raise RuntimeError(proc.stdout.read() if proc.stdout else "serve did not start") from None
            time.sleep(0.1)
