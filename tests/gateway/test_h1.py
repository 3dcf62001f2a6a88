"""Our HTTP/1.1 upstream client against real loopback servers: keep-alive, chunked bodies, stale
connections, back-pressure, cancellation — and the aiohttp backend giving the same answers."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp import web

from smolgate.providers.h1 import H1Error, H1Pool
from tests.fakes.harness import FakeUpstream


class Echo(FakeUpstream):
    def __init__(self) -> None:
        super().__init__()
        self.peers: set[int] = set()

    def routes(self, app: web.Application) -> None:
        async def echo(request: web.Request) -> web.StreamResponse:
            self.peers.add(request.transport.get_extra_info("peername")[1])  # type: ignore[union-attr]
            body = await request.read()
            if request.query.get("mode") == "chunked":
                resp = web.StreamResponse()
                resp.enable_chunked_encoding()
                await resp.prepare(request)
                for i in range(5):
                    await resp.write(b"part%d;" % i)
                await resp.write_eof()
                return resp
            if request.query.get("mode") == "close":
                return web.Response(body=body, headers={"Connection": "close"})
            if request.query.get("mode") == "big":
                resp = web.StreamResponse()
                await resp.prepare(request)
                for _ in range(64):
                    await resp.write(b"x" * 65536)
                await resp.write_eof()
                return resp
            if request.query.get("mode") == "hang":
                await asyncio.sleep(2)
            return web.Response(body=b"echo:" + body, headers={"x-test": request.headers.get("x-test", "")})

        app.router.add_post("/v1/echo", echo)


@pytest.fixture(scope="module")
def echo():
    e = Echo().start()
    yield e
    e.stop()


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


def test_keep_alive_reuses_one_connection(echo):
    async def go() -> list[bytes]:
        pool = H1Pool(echo.url + "/v1", connect_timeout=5)
        out = []
        for i in range(5):
            r = await pool.post("/echo", b"n%d" % i, {"x-test": "yes"})
            assert r.status == 200 and r.headers["x-test"] == "yes"
            out.append(await r.read())
        pool.close()
        return out

    echo.peers.clear()
    assert run(go()) == [b"echo:n%d" % i for i in range(5)]
    assert len(echo.peers) == 1


def test_chunked_body_is_decoded_in_order(echo):
    async def go() -> bytes:
        pool = H1Pool(echo.url, 5)
        r = await pool.post("/v1/echo", b"", {}, "mode=chunked")
        return await r.read()

    assert run(go()) == b"part0;part1;part2;part3;part4;"


def test_connection_close_is_not_reused(echo):
    async def go() -> None:
        pool = H1Pool(echo.url, 5)
        r = await pool.post("/v1/echo", b"a", {}, "mode=close")
        assert await r.read() == b"a"
        r = await pool.post("/v1/echo", b"b", {})
        assert await r.read() == b"echo:b"

    run(go())


def test_large_body_streams_with_bounded_buffer(echo):
    async def go() -> int:
        pool = H1Pool(echo.url, 5)
        r = await pool.post("/v1/echo", b"", {}, "mode=big")
        total, biggest = 0, 0
        while chunk := await r.read_chunk():
            total += len(chunk)
            biggest = max(biggest, len(chunk))
            await asyncio.sleep(0.001)  # a slow reader: the socket must pause, not buffer everything
        assert biggest <= (1 << 20) + (1 << 19)  # high-water mark + what one socket read may bring
        return total

    assert run(go()) == 64 * 65536


def test_closing_an_unfinished_response_drops_the_connection(echo):
    async def go() -> None:
        pool = H1Pool(echo.url, 5)
        with pytest.raises(asyncio.TimeoutError):
            async with asyncio.timeout(0.3):
                await pool.post("/v1/echo", b"", {}, "mode=hang")
        assert not pool._idle  # the abandoned connection is not pooled

    run(go())


def test_refused_connection_raises(echo):
    async def go() -> None:
        pool = H1Pool("http://127.0.0.1:9", 2)  # discard port: nothing listens
        with pytest.raises((ConnectionError, OSError, H1Error)):
            await pool.post("/x", b"", {})

    run(go())


@pytest.mark.parametrize("transport", ["h1", "aiohttp"])
def test_both_backends_serve_the_gateway(upstreams, transport):
    import httpx

    from tests.gateway.conftest import matrix_config
    from tests.gateway_server import GatewayServer

    cfg = matrix_config({k: f.url for k, f in upstreams.items()}).replace(
        "    timeouts:", f"    transport: {transport}\n    timeouts:"
    )
    with GatewayServer(cfg) as gw:
        for upstream in ("openai", "anthropic", "gemini", "ollama"):
            r = httpx.post(
                gw.url + "/v1/chat/completions",
                json={"model": f"via-{upstream}", "messages": [{"role": "user", "content": "hi"}]},
            )
            assert r.json()["choices"][0]["message"]["content"].startswith("You said: hi")
            with httpx.stream(
                "POST",
                gw.url + "/v1/chat/completions",
                json={
                    "model": f"via-{upstream}",
                    "stream": True,
                    "messages": [{"role": "user", "content": "hi"}],
                },
            ) as s:
                assert b"[DONE]" in b"".join(s.iter_raw())
