"""Class 1, upstream half: a client-derived value can never change the shape of what goes on the upstream wire,
and a keep-alive connection whose framing is in doubt is never handed to the next client."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from smolgate.canonical import AnthropicExtras, Extras, Message, Request, Text
from smolgate.config import parse_config
from smolgate.errors import ErrorKind, GatewayError
from smolgate.providers.h1 import H1Pool
from smolgate.providers.http import HttpProvider
from smolgate.providers.urls import UnsafeRequest
from tests.gateway_server import GatewayServer
from tests.security.evil_upstream import (
    EvilUpstream,
    Out,
    RawRequest,
    gemini_answer,
    json_response,
    provider_config,
    response,
)

KEY = "up-gemini-secret-key-0001"


def _request(text: str = "hi", beta: str | None = None) -> Request:
    extras = Extras(anthropic=AnthropicExtras(beta=beta))
    return Request(model="m", messages=[Message(role="user", content=[Text(text=text)])], extras=extras)


def _provider(protocol: str, url: str) -> HttpProvider:
    cfg = parse_config(provider_config(protocol, url, keys=(KEY,)))
    return HttpProvider(cfg.providers[0])


async def _answer_gemini(req: RawRequest, out: Out) -> bool:
    return await out.send(json_response(gemini_answer("You said: " + req.user_text())))


@pytest.mark.parametrize("model", ["x/../../v1/other?", "a b", "m\r\nx-evil: 1", "..", "%2e%2e", "é#frag"])
def test_a_model_name_is_exactly_one_encoded_path_segment(model):
    """Whatever a client puts in a model name, the upstream sees one request, to the model path, with the
    name as one percent-encoded segment that decodes back to exactly what the client wrote."""
    from urllib.parse import unquote

    with EvilUpstream(_answer_gemini) as up:
        provider = _provider("gemini", up.url)

        async def go() -> None:
            try:
                resp, _, _ = await provider.complete(_request(), model, KEY)
                assert resp.content[0].text == "You said: hi"
            finally:
                await provider.aclose()

        asyncio.run(go())
        assert len(up.requests) == 1
        target = up.requests[0].target
        prefix, _, method = target.rpartition(":")
        assert prefix.startswith("/v1beta/models/") and method == "generateContent"
        seg = prefix.removeprefix("/v1beta/models/")
        assert "/" not in seg and "?" not in seg and "#" not in seg and seg.strip(".") != ""
        assert unquote(seg) == model
        assert "x-evil" not in up.requests[0].headers


def test_crlf_in_a_header_value_is_refused_before_anything_is_sent():
    """A client-derived header (Anthropic's beta header) with CR/LF: a 400 in the client's terms, no bytes out."""
    with EvilUpstream(_answer_gemini) as up:
        provider = _provider("anthropic", up.url)

        async def go() -> GatewayError:
            try:
                with pytest.raises(GatewayError) as info:
                    await provider.complete(_request(beta="x\r\nx-injected: 1"), "claude", KEY)
                return info.value
            finally:
                await provider.aclose()

        err = asyncio.run(go())
        assert err.kind is ErrorKind.INVALID_REQUEST and err.status == 400
        assert up.connections == 0 and not up.requests


@pytest.mark.parametrize("target", ["/a b", "/a\r\nx: y", "/a\x00", "/é", "/a\tb"])
def test_h1_refuses_an_unsafe_request_target(target):
    with EvilUpstream(_answer_gemini) as up:

        async def go() -> None:
            pool = H1Pool(up.url, 5)
            with pytest.raises(UnsafeRequest):
                await pool.post(target, b"{}", {})
            with pytest.raises(UnsafeRequest):
                await pool.post("/ok", b"{}", {"x-a": "v\r\nx-b: 1"})
            with pytest.raises(UnsafeRequest):
                await pool.post("/ok", b"{}", {"x a": "v"})
            with pytest.raises(UnsafeRequest):
                await pool.post("/ok", b"{}", {"content-length": "0"})  # framing is ours alone
            pool.close()

        asyncio.run(go())
        assert up.connections == 0


# ------------------------------------------------------------------ connection reuse


def _two_posts(url: str) -> tuple[list[bytes], list[int]]:
    async def go() -> tuple[list[bytes], list[int]]:
        pool = H1Pool(url, 5)
        bodies, statuses = [], []
        for i in range(2):
            r = await pool.post("/x", b"request-%d" % i, {})
            statuses.append(r.status)
            bodies.append(await r.read())
            await asyncio.sleep(0.05)  # let anything the upstream sent after the response arrive
        pool.close()
        return bodies, statuses

    return asyncio.run(go())


def test_a_second_response_behind_the_first_closes_the_connection():
    async def script(req: RawRequest, out: Out) -> bool:
        own = b"answer-to-" + req.body
        stray = b"stray-answer-for-someone-else"
        return await out.send(response(own) + response(stray))

    with EvilUpstream(script) as up:
        bodies, _ = _two_posts(up.url)
        assert bodies == [b"answer-to-request-0", b"answer-to-request-1"]
        assert up.connections == 2  # the doubtful connection was not reused


def test_bytes_arriving_after_the_response_close_the_idle_connection():
    async def script(req: RawRequest, out: Out) -> bool:
        await out.send(response(b"answer-to-" + req.body))
        await asyncio.sleep(0.01)
        return await out.send(response(b"late-stray-answer"))

    with EvilUpstream(script) as up:
        bodies, _ = _two_posts(up.url)
        assert bodies == [b"answer-to-request-0", b"answer-to-request-1"]
        assert up.connections == 2


def test_a_body_read_until_close_is_never_reused():
    async def script(req: RawRequest, out: Out) -> bool:
        # HTTP/1.1, keep-alive by default, but neither Content-Length nor chunked: framed by the close only.
        await out.send(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\nanswer-to-" + req.body)
        return False

    with EvilUpstream(script) as up:
        bodies, _ = _two_posts(up.url)
        assert bodies == [b"answer-to-request-0", b"answer-to-request-1"]
        assert up.connections == 2


def test_informational_responses_before_the_answer_are_skipped():
    async def script(req: RawRequest, out: Out) -> bool:
        early = b"HTTP/1.1 103 Early Hints\r\nlink: </x>\r\n\r\nHTTP/1.1 100 Continue\r\n\r\n"
        return await out.send(early + response(b"answer-to-" + req.body))

    with EvilUpstream(script) as up:
        bodies, statuses = _two_posts(up.url)
        assert bodies == [b"answer-to-request-0", b"answer-to-request-1"] and statuses == [200, 200]
        assert up.connections == 1


def test_keep_alive_still_reuses_a_clean_connection():
    async def script(req: RawRequest, out: Out) -> bool:
        return await out.send(response(b"answer-to-" + req.body))

    with EvilUpstream(script) as up:
        bodies, _ = _two_posts(up.url)
        assert bodies == [b"answer-to-request-0", b"answer-to-request-1"]
        assert up.connections == 1


# ------------------------------------------------------------------ the end-to-end smuggling attempt


def test_a_smuggled_request_never_gives_one_client_another_clients_answer():
    """Client A puts a whole second request into a model name (reachable through `provider/model`); the
    upstream answers every request it parses, in order, the smuggled one a little late. Client B, next on
    the same keep-alive connection, must get its own answer — never the one meant for A's smuggled request."""

    async def script(req: RawRequest, out: Out) -> bool:
        if "smuggled" in req.path:
            await asyncio.sleep(0.3)  # B's request is on the wire by now
        return await out.send(json_response(gemini_answer("You said: " + req.user_text())))

    with EvilUpstream(script) as up:
        cfg = provider_config("gemini", up.url, keys=(KEY,), name="g")
        with GatewayServer(cfg) as gw:
            evil_model = (
                "g/x:generateContent HTTP/1.1\r\nhost: up\r\ncontent-length: 0\r\n\r\n"
                "POST /v1beta/models/smuggled"
            )
            a = httpx.post(
                gw.url + "/v1/chat/completions",
                timeout=10,
                json={"model": evil_model, "messages": [{"role": "user", "content": "secret of client A"}]},
            )
            b = httpx.post(
                gw.url + "/v1/chat/completions",
                timeout=10,
                json={"model": "m", "messages": [{"role": "user", "content": "hello from client B"}]},
            )
        assert b.status_code == 200, b.text
        assert b.json()["choices"][0]["message"]["content"] == "You said: hello from client B"
        assert a.status_code in (200, 400, 404), a.text
        if a.status_code == 200:
            assert a.json()["choices"][0]["message"]["content"] == "You said: secret of client A"
        assert not any(r.path == "/v1beta/models/smuggled:generateContent" for r in up.requests)
        assert all(r.headers.get("host") != "up" for r in up.requests)


@pytest.mark.parametrize(
    "extra",
    [
        '    headers: {x-org: "a\\r\\nx-evil: 1"}\n',
        '    headers: {"x org": "v"}\n',
        '    headers: {content-length: "0"}\n',
    ],
)
def test_a_configured_header_that_http_cannot_carry_is_a_config_error(extra):
    from smolgate.config import ConfigError

    cfg = parse_config(provider_config("openai", "http://127.0.0.1:9", extra=extra))
    with pytest.raises(ConfigError) as info:
        HttpProvider(cfg.providers[0])
    assert "\r" not in str(info.value)
