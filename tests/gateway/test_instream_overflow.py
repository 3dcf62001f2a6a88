"""An upstream that says "prompt too long" as the first event of its stream: the client gets its own
protocol's "prompt too long" 400 (the form agents compact on), and the gateway does not retry the same prompt
elsewhere."""

from __future__ import annotations

import httpx

from tests.gateway_server import GatewayServer
from tests.security.evil_upstream import (
    EvilUpstream,
    Out,
    RawRequest,
    chunk,
    chunked_head,
    provider_config,
    sse,
)

MESSAGE = "prompt is too long: 250000 tokens > 200000 maximum"


async def overflow_in_stream(req: RawRequest, out: Out) -> bool:
    event = sse({"type": "error", "error": {"type": "invalid_request_error", "message": MESSAGE}}, "error")
    await out.send(chunked_head() + chunk(event) + b"0\r\n\r\n")
    return False


def test_a_too_long_error_as_the_first_stream_event_is_each_clients_own_400_and_not_retried():
    cfg = provider_config("anthropic", "{url}", keys=("k-one-000001", "k-two-000002")).replace(
        "retry: {attempts: 1", "retry: {attempts: 4"
    )  # room to retry: it must not
    with EvilUpstream(overflow_in_stream) as up, GatewayServer(cfg.replace("{url}", up.url)) as gw:
        chat = httpx.post(
            gw.url + "/v1/chat/completions",
            timeout=10,
            json={"model": "m", "stream": True, "messages": [{"role": "user", "content": "hi"}]},
        )
        assert chat.status_code == 400, chat.text
        assert chat.json()["error"]["code"] == "context_length_exceeded"
        claude = httpx.post(
            gw.url + "/v1/messages",
            timeout=10,
            headers={"anthropic-version": "2023-06-01"},
            json={
                "model": "m",
                "stream": True,
                "max_tokens": 64,
                "messages": [{"role": "user", "content": "hi"}],
            },
        )
        assert claude.status_code == 400
        assert "prompt is too long: 250000 tokens > 200000 maximum" in claude.json()["error"]["message"]
        gemini = httpx.post(
            gw.url + "/v1beta/models/m:streamGenerateContent?alt=sse",
            timeout=10,
            json={"contents": [{"role": "user", "parts": [{"text": "hi"}]}]},
        )
        assert gemini.status_code == 400 and gemini.json()["error"]["status"] == "INVALID_ARGUMENT"
        assert len(up.requests) == 3  # one upstream call per client request: the second account was not tried
