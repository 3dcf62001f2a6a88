"""Class 7: what an upstream sends back is capped (body, stream line, headers) on both transports: past a cap
the client gets a clean 502 (or its in-stream error once its stream began), the gateway stops reading and
closes the connection, so its memory stays bounded by the cap."""

from __future__ import annotations

import json

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
    provider_config,
)

LIMITS = (
    "    limits: {max_response_bytes: 65536, max_line_bytes: 32768, max_header_bytes: 8192}\n"
    "    timeouts: {first_byte: 8, idle: 8, total: 10}\n"
)
PIECE = b"x" * 65536
ENOUGH = 48 << 20  # what an endless upstream gives up after (bounds the test on a gateway without caps)


def _gateway(protocol: str, url: str, transport: str) -> GatewayServer:
    return GatewayServer(provider_config(protocol, url, extra=LIMITS, transport=transport))


def _post(gw: GatewayServer, stream: bool) -> httpx.Response:
    return httpx.post(
        gw.url + "/v1/chat/completions",
        timeout=15,
        json={"model": "m", "stream": stream, "messages": [{"role": "user", "content": "hi"}]},
    )


async def _endless(out: Out, prefix: bytes, piece: bytes, chunked: bool) -> bool:
    if not await out.send(prefix):
        return False
    sent = 0
    while sent < ENOUGH and await out.send(chunk(piece) if chunked else piece):
        sent += len(piece)
    return False


def _assert_stopped_early(up: EvilUpstream) -> None:
    assert up.peer_closed >= 1  # the gateway hung up on the endless response …
    assert up.bytes_sent < 24 << 20  # … long before it ended (kernel buffers hold a few MiB at most)


@pytest.mark.parametrize("transport", ["h1", "aiohttp"])
@pytest.mark.parametrize("framing", ["chunked", "length"])
def test_a_huge_body_is_cut_at_max_response_bytes(transport, framing):
    async def script(req: RawRequest, out: Out) -> bool:
        if framing == "chunked":
            head = chunked_head(content_type="application/json") + chunk(b'{"choices": ["')
        else:  # a length far past the cap, announced up front
            head = (
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 1073741824\r\n\r\n"
                b'{"choices": ["'
            )
        return await _endless(out, head, PIECE, framing == "chunked")

    with EvilUpstream(script) as up, _gateway("openai", up.url, transport) as gw:
        r = _post(gw, stream=False)
        assert r.status_code == 502, r.text
        assert "limits" in r.json()["error"]["message"]
    _assert_stopped_early(up)


@pytest.mark.parametrize("transport", ["h1", "aiohttp"])
@pytest.mark.parametrize("protocol", ["openai", "anthropic", "gemini", "ollama"])
def test_a_huge_stream_line_before_any_event_is_a_502(transport, protocol):
    async def script(req: RawRequest, out: Out) -> bool:
        prefix = b"" if protocol == "ollama" else b"data: "
        return await _endless(
            out, chunked_head(content_type=STREAM_TYPE[protocol]) + chunk(prefix + b'{"a": "'), PIECE, True
        )

    with EvilUpstream(script) as up, _gateway(protocol, up.url, transport) as gw:
        r = _post(gw, stream=True)
        assert r.status_code == 502, r.text
        assert "limits" in r.json()["error"]["message"]
    _assert_stopped_early(up)


@pytest.mark.parametrize("protocol", ["openai", "ollama"])
def test_a_huge_line_mid_stream_ends_the_stream_with_an_error(protocol):
    async def script(req: RawRequest, out: Out) -> bool:
        started = b"".join(chunk(f) for f in complete_stream(protocol, "partial answer")[:1])
        prefix = b"" if protocol == "ollama" else b"data: "
        return await _endless(
            out,
            chunked_head(content_type=STREAM_TYPE[protocol]) + started + chunk(prefix + b'{"a": "'),
            PIECE,
            True,
        )

    with EvilUpstream(script) as up, _gateway(protocol, up.url, "h1") as gw:
        with httpx.stream(
            "POST",
            gw.url + "/v1/chat/completions",
            timeout=15,
            json={"model": "m", "stream": True, "messages": [{"role": "user", "content": "hi"}]},
        ) as r:
            raw = b"".join(r.iter_raw()).decode()
        assert r.status_code == 200
        assert "partial answer" in raw
        errors = [
            json.loads(line[6:])["error"]
            for line in raw.splitlines()
            if line.startswith("data: {") and '"error"' in line
        ]
        assert errors and "limits" in errors[0]["message"]
    _assert_stopped_early(up)


def test_data_lines_without_an_event_end_count_toward_the_cap():
    """Endless short `data:` lines that never close their event grow the SSE parser just the same."""

    async def script(req: RawRequest, out: Out) -> bool:
        return await _endless(out, chunked_head(), b"data: x\n" * 8192, True)

    with EvilUpstream(script) as up, _gateway("openai", up.url, "h1") as gw:
        r = _post(gw, stream=True)
        assert r.status_code == 502, r.text
    _assert_stopped_early(up)


@pytest.mark.parametrize("transport", ["h1", "aiohttp"])
@pytest.mark.parametrize("shape", ["one-huge-header", "many-headers"])
def test_huge_or_too_many_response_headers_are_a_502(transport, shape):
    async def script(req: RawRequest, out: Out) -> bool:
        head = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
        if shape == "one-huge-header":
            return await _endless(out, head + b"x-junk: ", b"y" * 4096, False)
        lines = b"".join(b"x-h%d: v\r\n" % i for i in range(100_000))
        await out.send(head + lines)
        return False

    with EvilUpstream(script) as up, _gateway("openai", up.url, transport) as gw:
        r = _post(gw, stream=False)
        assert r.status_code == 502, r.text
        if transport == "h1":
            assert "limits" in r.json()["error"]["message"]
    if shape == "one-huge-header":
        _assert_stopped_early(up)


def test_endless_trailers_after_the_body_are_capped():
    """After the last chunk come trailer fields; one that never ends grows the parser like a header would."""

    async def script(req: RawRequest, out: Out) -> bool:
        body = b'{"choices": [{"message": {"role": "assistant", "content": "ok"}}]}'
        head = chunked_head(content_type="application/json") + chunk(body) + b"0\r\nx-trailer: "
        return await _endless(out, head, PIECE, False)

    with EvilUpstream(script) as up, _gateway("openai", up.url, "h1") as gw:
        r = _post(gw, stream=False)
        assert r.status_code == 502, r.text
        assert "limits" in r.json()["error"]["message"]
    _assert_stopped_early(up)
