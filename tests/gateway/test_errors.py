"""Failures reach each client in its own protocol: upstream statuses, mid-stream errors, bad input."""

from __future__ import annotations

import anthropic
import httpx
import ollama
import openai
import pytest
from google.genai import errors as genai_errors

from tests.gateway.clients import (
    CLIENTS,
    Ask,
)
from tests.gateway.conftest import matrix_config
from tests.gateway_server import GatewayServer

UPSTREAMS = ["openai", "openai-responses", "anthropic", "gemini", "ollama"]

# What each SDK raises for a given status, and how to read the status off the exception.
SDK_ERRORS = (openai.APIError, anthropic.APIError, genai_errors.APIError, ollama.ResponseError, RuntimeError)


def status_of(exc: BaseException) -> int | None:
    for attr in ("status_code", "code"):
        v = getattr(exc, attr, None)
        if isinstance(v, int):
            return v
    return None


@pytest.fixture(scope="module")
def clients(gateway):
    return {c: c(gateway.url) for c in CLIENTS}


@pytest.fixture
def fresh_gateway(upstreams):
    """Its own pool state: a 429 or 5xx here must not cool down the shared gateway's accounts."""
    with GatewayServer(matrix_config({k: f.url for k, f in upstreams.items()})) as gw:
        yield gw


@pytest.mark.parametrize("upstream", UPSTREAMS)
@pytest.mark.parametrize("client_cls", CLIENTS, ids=[c.name for c in CLIENTS])
def test_error_mid_stream_ends_the_stream_with_the_protocols_error(clients, client_cls, upstream):
    with pytest.raises(SDK_ERRORS) as info:
        clients[client_cls].ask(
            f"via-{upstream}", Ask(turns=[("user", "FAIL_MIDSTREAM please")], stream=True)
        )
    assert "Traceback" not in str(info.value)


@pytest.mark.parametrize("upstream", UPSTREAMS)
@pytest.mark.parametrize("client_cls", CLIENTS, ids=[c.name for c in CLIENTS])
@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_upstream_429_stays_429(fresh_gateway, client_cls, upstream, stream):
    with pytest.raises(SDK_ERRORS) as info:
        client_cls(fresh_gateway.url).ask(
            f"via-{upstream}", Ask(turns=[("user", "FAIL_STATUS_429")], stream=stream)
        )
    assert status_of(info.value) == 429


@pytest.mark.parametrize("upstream", UPSTREAMS)
def test_upstream_5xx_becomes_502_with_retry_after_on_429(upstreams, upstream):
    with GatewayServer(matrix_config({k: f.url for k, f in upstreams.items()})) as gw:
        r = httpx.post(
            f"{gw.url}/v1/chat/completions",
            json={"model": f"via-{upstream}", "messages": [{"role": "user", "content": "FAIL_STATUS_500"}]},
        )
        assert r.status_code == 502
        assert set(r.json()["error"]) >= {"message", "type"}
        assert "Traceback" not in r.text
    with GatewayServer(matrix_config({k: f.url for k, f in upstreams.items()})) as gw:
        r = httpx.post(
            f"{gw.url}/v1/chat/completions",
            json={"model": f"via-{upstream}", "messages": [{"role": "user", "content": "FAIL_STATUS_429"}]},
        )
    assert r.status_code == 429 and r.headers.get("retry-after")


BAD_BODIES = {
    "/v1/chat/completions": [
        (b"{not json", None),
        (b'{"model": "via-openai"}', "messages"),
        (b'{"model": "via-openai", "messages": "hi"}', "messages"),
        (b'{"model": 5, "messages": []}', "model"),
        (
            b'{"model": "via-openai", "messages": [{"role": "user", "content": "x"}], "max_tokens": "ten"}',
            "max_tokens",
        ),
    ],
    "/v1/responses": [(b"[]", None), (b'{"model": "via-openai", "input": 5}', "input")],
    "/v1/messages": [
        (b'{"model": "via-openai", "messages": [{"role": "user", "content": "x"}]}', "max_tokens"),
        (b'{"model": "via-openai", "max_tokens": 5, "messages": [{"role": "wizard", "content": "x"}]}', None),
    ],
    "/v1beta/models/via-openai:generateContent": [(b'{"contents": "x"}', None), (b"nope", None)],
    "/api/chat": [(b'{"model": "via-openai", "messages": 3}', None), (b"", None)],
}


def shape_ok(path: str, body: dict) -> bool:
    if path.startswith("/v1/messages"):
        return body.get("type") == "error" and {"type", "message"} <= set(body["error"])
    if path.startswith("/v1beta"):
        return {"code", "message", "status"} <= set(body["error"])
    if path.startswith("/api/"):
        return isinstance(body.get("error"), str)
    return {"message", "type"} <= set(body["error"])


@pytest.mark.parametrize("path,body,field", [(p, b, f) for p, cases in BAD_BODIES.items() for b, f in cases])
def test_malformed_input_is_a_400_in_the_clients_shape(gateway, path, body, field):
    headers = {"content-type": "application/json", "anthropic-version": "2023-06-01"}
    r = httpx.post(gateway.url + path, content=body, headers=headers)
    assert r.status_code == 400, r.text
    payload = r.json()
    assert shape_ok(path, payload), payload
    assert "Traceback" not in r.text
    if field:
        assert field in r.text


@pytest.mark.parametrize(
    "path,body",
    [
        ("/v1/chat/completions", {"model": "nope", "messages": [{"role": "user", "content": "x"}]}),
        ("/v1/messages", {"model": "nope", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}),
        ("/v1beta/models/nope:generateContent", {"contents": [{"role": "user", "parts": [{"text": "x"}]}]}),
        ("/api/chat", {"model": "nope", "messages": [{"role": "user", "content": "x"}]}),
        ("/v1/responses", {"model": "nope", "input": "x"}),
    ],
)
def test_unknown_model_is_a_404_in_the_clients_shape(gateway, path, body):
    r = httpx.post(gateway.url + path, json=body, headers={"anthropic-version": "2023-06-01"})
    assert r.status_code == 404
    assert shape_ok(path, r.json())
    assert "nope" in r.text


def test_oversized_body_is_413(gateway):
    big = (
        b'{"model":"via-openai","messages":[{"role":"user","content":"' + b"x" * (33 * 1024 * 1024) + b'"}]}'
    )
    r = httpx.post(
        gateway.url + "/v1/chat/completions", content=big, headers={"content-type": "application/json"}
    )
    assert r.status_code == 413
    assert shape_ok("/v1/chat/completions", r.json())


def test_unknown_route_is_404(gateway):
    r = httpx.get(gateway.url + "/v2/whatever")
    assert r.status_code == 404


def test_unknown_previous_response_id_is_a_404_naming_it(gateway):
    c = openai.OpenAI(base_url=gateway.url + "/v1", api_key="k", max_retries=0)
    with pytest.raises(openai.NotFoundError) as info:
        c.responses.create(model="via-openai", input="hi", previous_response_id="resp_123")
    assert "resp_123" in str(info.value) and info.value.body["param"] == "previous_response_id"


@pytest.mark.parametrize("upstream", ["gemini", "ollama"])  # targets that need bytes make us fetch URLs
@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9/a.png",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]/x.png",
        "http://10.1.2.3/x.png",
    ],
)
def test_remote_image_url_to_private_address_is_refused(gateway, upstreams, upstream, url):
    before = len(upstreams[upstream].requests)
    r = httpx.post(
        gateway.url + "/v1/chat/completions",
        json={
            "model": f"via-{upstream}",
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "x"},
                        {"type": "image_url", "image_url": {"url": url}},
                    ],
                }
            ],
        },
    )
    assert r.status_code == 400
    assert "refused" in r.json()["error"]["message"]
    assert len(upstreams[upstream].requests) == before  # nothing was sent upstream either


def test_remote_image_is_fetched_and_inlined_when_allowed(upstreams, png):
    """With `allow_private_image_urls` (a test-only opt-in here), a loopback URL is fetched once and sent
    inline to an upstream that takes only bytes."""
    from aiohttp import web

    from tests.fakes.harness import FakeUpstream

    class ImageHost(FakeUpstream):
        def routes(self, app: web.Application) -> None:
            app.router.add_get("/cat.png", lambda r: web.Response(body=png, content_type="image/png"))
            app.router.add_get("/page.html", lambda r: web.Response(text="<html>", content_type="text/html"))
            app.router.add_get("/hop", lambda r: web.HTTPFound("/cat.png"))

    host = ImageHost().start()
    cfg = matrix_config(
        {k: f.url for k, f in upstreams.items()}, "server: {allow_private_image_urls: true}\n"
    )
    try:
        with GatewayServer(cfg) as gw:
            for path in ("/cat.png", "/hop"):
                r = httpx.post(
                    gw.url + "/v1/chat/completions",
                    json={
                        "model": "via-gemini",
                        "messages": [
                            {
                                "role": "user",
                                "content": [
                                    {"type": "text", "text": "x"},
                                    {"type": "image_url", "image_url": {"url": host.url + path}},
                                ],
                            }
                        ],
                    },
                )
                assert r.status_code == 200, r.text
                assert r.json()["choices"][0]["message"]["content"].endswith("images=1 turns=1")
                parts = upstreams["gemini"].last.json["contents"][-1]["parts"]
                assert any("inlineData" in p or "inline_data" in p for p in parts)
            r = httpx.post(
                gw.url + "/v1/chat/completions",
                json={
                    "model": "via-gemini",
                    "messages": [
                        {
                            "role": "user",
                            "content": [{"type": "image_url", "image_url": {"url": host.url + "/page.html"}}],
                        }
                    ],
                },
            )
            assert r.status_code == 400 and "content type" in r.json()["error"]["message"]
    finally:
        host.stop()
