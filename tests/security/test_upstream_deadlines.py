"""Class 8: stream deadlines and endings.

`first_byte` is absolute from the request to the first event, `idle` is the longest time without a new
event (bytes that make no event don't count), `total` bounds the whole call, streams included (and frees the
account). A stream that delivered its terminal event is complete whatever the connection does next.
"""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import pytest

from tests.gateway_server import GatewayServer
from tests.security.evil_upstream import (
    STREAM_TYPE,
    EvilUpstream,
    Out,
    RawRequest,
    chunk,
    chunked_head,
    complete_stream,
    json_response,
    openai_chunk,
    provider_config,
    sse,
)

FOREVER = 30.0  # how long a misbehaving script keeps going (bounds the test on a gateway without deadlines)


def _gateway(protocol: str, url: str, timeouts: str, transport: str = "h1", extra: str = "") -> GatewayServer:
    return GatewayServer(
        provider_config(protocol, url, transport=transport, extra=f"    timeouts: {{{timeouts}}}\n{extra}")
    )


def _stream(
    gw: GatewayServer, text: str = "hi", path: str = "/v1/chat/completions"
) -> tuple[int, str, float]:
    t0 = time.monotonic()
    with httpx.stream(
        "POST",
        gw.url + path,
        timeout=20,
        json={"model": "m", "stream": True, "messages": [{"role": "user", "content": text}]},
    ) as r:
        raw = b"".join(r.iter_raw()).decode()
    return r.status_code, raw, time.monotonic() - t0


def _errors(raw: str) -> list[dict]:
    return [
        json.loads(line[6:])["error"]
        for line in raw.splitlines()
        if line.startswith("data: {") and '"error"' in line
    ]


async def _drip(out: Out, piece: bytes, every: float) -> bool:
    end = time.monotonic() + FOREVER
    while time.monotonic() < end and await out.send(chunk(piece)):
        await asyncio.sleep(every)
    return False


@pytest.mark.parametrize("transport", ["h1", "aiohttp"])
def test_a_drip_of_bytes_cannot_hold_the_clients_headers_past_first_byte(transport):
    async def script(req: RawRequest, out: Out) -> bool:
        await out.send(chunked_head())
        return await _drip(out, b":", 0.2)  # one byte of SSE comment at a time: never an event

    with (
        EvilUpstream(script) as up,
        _gateway("openai", up.url, "first_byte: 1, idle: 10, total: 20", transport) as gw,
    ):
        status, raw, took = _stream(gw)
    assert status == 504, raw
    assert "first_byte" in json.loads(raw)["error"]["message"]
    assert took < 6  # ≈ first_byte, not idle or total


@pytest.mark.parametrize("transport", ["h1", "aiohttp"])
def test_dripped_response_headers_are_cut_at_first_byte(transport):
    async def script(req: RawRequest, out: Out) -> bool:
        return await out.drip(b"HTTP/1.1 200 OK\r\n" + b"x-slow: " + b"y" * 200, 0.1)

    with (
        EvilUpstream(script) as up,
        _gateway("openai", up.url, "first_byte: 1, idle: 10, total: 20", transport) as gw,
    ):
        t0 = time.monotonic()
        r = httpx.post(
            gw.url + "/v1/chat/completions",
            timeout=20,
            json={"model": "m", "messages": [{"role": "user", "content": "hi"}]},
        )
        assert r.status_code == 504 and time.monotonic() - t0 < 6


@pytest.mark.parametrize("transport", ["h1", "aiohttp"])
def test_idle_counts_events_not_bytes(transport):
    """After the first event, SSE comments every 0.2 s are not progress: `idle` ends the stream."""

    async def script(req: RawRequest, out: Out) -> bool:
        await out.send(chunked_head() + chunk(openai_chunk("first words")))
        return await _drip(out, b": keep-alive\n\n", 0.2)

    with (
        EvilUpstream(script) as up,
        _gateway("openai", up.url, "first_byte: 5, idle: 1, total: 20", transport) as gw,
    ):
        status, raw, took = _stream(gw)
    assert status == 200 and "first words" in raw
    errors = _errors(raw)
    assert errors and "idle" in errors[0]["message"]
    assert took < 6


def test_total_cuts_an_endless_stream_and_frees_the_account():
    async def script(req: RawRequest, out: Out) -> bool:
        if "second" in req.user_text():
            frames = complete_stream("openai", "second answer")
            return await out.send(chunked_head() + b"".join(chunk(f) for f in frames) + b"0\r\n\r\n")
        await out.send(chunked_head())
        return await _drip(out, openai_chunk("more "), 0.1)  # real progress, forever

    extra = "    queue_timeout: 1\n"
    cfg = provider_config("openai", "URL", extra="    timeouts: {first_byte: 5, idle: 5, total: 2}\n" + extra)
    cfg = cfg.replace(
        "accounts: [{api_key: sk-evil-test-key-0001}]",
        "accounts: [{api_key: sk-evil-test-key-0001, max_concurrency: 1}]",
    )
    with EvilUpstream(script) as up, GatewayServer(cfg.replace("URL", up.url)) as gw:
        status, raw, took = _stream(gw, "first")
        assert status == 200 and raw.count("more ") >= 3
        errors = _errors(raw)
        assert errors and "total" in errors[0]["message"]
        assert took < 8
        status, raw, _ = _stream(gw, "second")  # the only slot was released: this one gets through
        assert status == 200 and "second answer" in raw and not _errors(raw)


@pytest.mark.parametrize("ending", ["held-open", "dropped"])
@pytest.mark.parametrize(
    ("protocol", "transport"),
    [
        ("openai", "h1"),
        ("anthropic", "h1"),
        ("gemini", "h1"),
        ("ollama", "h1"),
        ("openai", "aiohttp"),
        ("gemini", "aiohttp"),
    ],
)
def test_a_stream_is_complete_at_its_terminal_event(protocol, transport, ending):
    """The terminal event arrived; then the chunked body never ends (held open), or the connection drops
    without its last chunk. The client's answer is complete, with no error, and the connection is not reused."""

    async def script(req: RawRequest, out: Out) -> bool:
        frames = complete_stream(protocol, "whole answer")
        await out.send(chunked_head(content_type=STREAM_TYPE[protocol]) + b"".join(chunk(f) for f in frames))
        if ending == "held-open":
            await asyncio.sleep(FOREVER)
        return False

    with (
        EvilUpstream(script) as up,
        _gateway(protocol, up.url, "first_byte: 5, idle: 4, total: 20", transport) as gw,
    ):
        for _ in range(2):
            status, raw, took = _stream(gw)
            assert status == 200 and "whole answer" in raw
            assert not _errors(raw), raw
            assert raw.rstrip().endswith("data: [DONE]")
            assert took < 3  # not held until `idle` ran out
    assert up.connections == 2


def test_a_gemini_stream_answered_with_an_error_object_is_an_error():
    """A streaming call answered 200 with a JSON error body, or with an SSE error frame first."""

    async def script(req: RawRequest, out: Out) -> bool:
        err = {"error": {"code": 503, "message": "The model is overloaded.", "status": "UNAVAILABLE"}}
        if "json" in req.user_text():
            return await out.send(json_response(err))
        return await out.send(chunked_head() + chunk(sse(err)) + b"0\r\n\r\n")

    with EvilUpstream(script) as up, _gateway("gemini", up.url, "first_byte: 5, idle: 5, total: 20") as gw:
        for text in ("json body", "sse frame"):
            status, raw, _ = _stream(gw, text)
            assert status >= 500, raw
            assert "overloaded" in json.loads(raw)["error"]["message"]
