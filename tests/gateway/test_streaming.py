"""Streaming is incremental, and a client that goes away closes the upstream request."""

from __future__ import annotations

import time

import httpx
import pytest

UPSTREAMS = ["openai", "openai-responses", "anthropic", "gemini", "ollama"]
CLIENT_REQUESTS = {
    "openai": (
        "/v1/chat/completions",
        lambda m: {"model": m, "stream": True, "messages": [{"role": "user", "content": "SLOW"}]},
    ),
    "openai-responses": ("/v1/responses", lambda m: {"model": m, "stream": True, "input": "SLOW"}),
    "anthropic": (
        "/v1/messages",
        lambda m: {
            "model": m,
            "stream": True,
            "max_tokens": 50,
            "messages": [{"role": "user", "content": "SLOW"}],
        },
    ),
    "gemini": (
        "/v1beta/models/{m}:streamGenerateContent?alt=sse",
        lambda m: {"contents": [{"role": "user", "parts": [{"text": "SLOW"}]}]},
    ),
    "ollama": ("/api/chat", lambda m: {"model": m, "messages": [{"role": "user", "content": "SLOW"}]}),
}
PAIRS = [(c, u) for c in CLIENT_REQUESTS for u in UPSTREAMS]


def _request(gateway, client: str, upstream: str):  # type: ignore[no-untyped-def]
    path, body = CLIENT_REQUESTS[client]
    model = f"via-{upstream}"
    return gateway.url + path.format(m=model), body(model)


@pytest.mark.parametrize("client,upstream", PAIRS)
def test_streaming_is_incremental_and_a_disconnect_closes_the_upstream(gateway, upstreams, client, upstream):
    """The SLOW script takes 8 × 0.25 s upstream. The first word must reach the client while the upstream
    is still sending; then the client leaves, and the upstream must see its request closed."""
    url, body = _request(gateway, client, upstream)
    fake = upstreams[upstream]
    done_before, disconnects_before = fake.completed_streams, fake.disconnects
    with httpx.stream("POST", url, json=body, headers={"anthropic-version": "2023-06-01"}, timeout=30) as r:
        assert r.status_code == 200
        got_first = False
        for chunk in r.iter_raw():
            if b"one" in chunk:  # the first word of the SLOW reply
                got_first = True
                assert fake.completed_streams == done_before, "the upstream had already finished"
                break  # leave mid-stream: closing the response drops the connection
    assert got_first
    deadline = time.monotonic() + 5
    while fake.disconnects == disconnects_before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert fake.disconnects == disconnects_before + 1, "the upstream never saw the request go away"
    assert fake.completed_streams == done_before
