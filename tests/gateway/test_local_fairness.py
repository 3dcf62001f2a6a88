"""A client that gives up while its long prompt is prefilled stops that prefill (#20 §2).

Nothing is sent to a client before its first token (a prefill error must still be a plain HTTP error), so the
server used to notice a disconnect only once the stream began: a client that gave up on a long prompt left the
engine prefilling it for everyone's cost. The server now watches for the disconnect while it waits.

The engine steps one prompt position at a time here (`step_tokens: 1`), so a prompt of a few thousand positions
is still being prefilled when the client leaves; the checks are counts, not times.
"""

from __future__ import annotations

import json
import socket
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.gateway_server import GatewayServer

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "engine"))  # tests/engine modules by basename
from checkpoints import make_checkpoint

PROMPT = "word " * 3000


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Any:
    path, _ = make_checkpoint("smollm2-text", tmp_path_factory.mktemp("fair") / "tiny-smollm2")
    cfg = (
        f"providers:\n  - name: local\n    protocol: local\n    model: {path}\n    step_tokens: 1\n"
        "models:\n  - name: tiny\n    targets: [{provider: local, model: default}]\n"
    )
    with GatewayServer(cfg) as gw:
        yield gw


def _until(check: Any, what: str) -> None:
    deadline = time.monotonic() + 120  # a liveness bound, not a speed claim
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.01)


def _request(protocol: str, stream: bool) -> tuple[str, bytes]:
    if protocol == "responses":
        body: dict[str, Any] = {"model": "tiny", "stream": stream, "input": PROMPT, "max_output_tokens": 8}
        return "/v1/responses", json.dumps(body).encode()
    body = {
        "model": "tiny",
        "stream": stream,
        "max_tokens": 8,
        "messages": [{"role": "user", "content": PROMPT}],
    }
    return "/v1/chat/completions", json.dumps(body).encode()


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "plain"])
@pytest.mark.parametrize("protocol", ["openai", "responses"])
def test_a_client_that_leaves_during_prefill_stops_it(gateway: Any, protocol: str, stream: bool) -> None:
    local = gateway.app.runtime.providers["local"]
    sched = local.engine.scheduler
    cancelled, passes, tokens = local.cancelled, sched.prefill_passes, sched.generated_tokens
    path, body = _request(protocol, stream)
    url = urlsplit(gateway.url)
    sock = socket.create_connection((url.hostname, url.port))
    head = f"POST {path} HTTP/1.1\r\nhost: {url.netloc}\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n"
    sock.sendall(head.encode() + body)
    _until(lambda: sched.prefill_passes > passes + 10, "the prompt's prefill began")
    sock.close()  # the client gives up before its first token
    _until(lambda: local.cancelled == cancelled + 1 and not sched.busy, "the generation ended")
    assert sched.generated_tokens == tokens  # it never reached a token
    prompt_tokens = len(PROMPT.split())  # at least one position per word
    assert sched.prefill_passes - passes < prompt_tokens  # stopped part-way, not after the whole prompt
    assert sched.stats().waiting == 0 and sched.stats().batch == 0
