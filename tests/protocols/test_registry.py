"""A protocol is one self-describing module: its `ProtocolSpec` alone decides its client routes, the error
shape of its paths, how its clients may present a key, which listing a shared path answers with, and the
auth and fixed headers a provider of it sends upstream."""

from __future__ import annotations

import asyncio
import re

import httpx
import orjson
import pytest

from smolgate.config import parse_config
from smolgate.console import endpoints as console
from smolgate.errors import GatewayError
from smolgate.protocols import PROTOCOLS, UPSTREAM_PROTOCOLS, codec
from smolgate.protocols.base import ErrorReply, RequestContext, UpstreamRequest
from smolgate.protocols.openai_chat import OpenAIChatCodec
from smolgate.protocols.spec import ClientRoute, KeyPresentation, ProtocolSpec, RouteKind, Upstream
from smolgate.providers.http import HttpProvider
from smolgate.server import admin
from smolgate.server.app import Gateway
from smolgate.server.routes import ROUTES, build
from smolgate.server.runtime import Runtime
from tests.security.evil_upstream import (
    EvilUpstream,
    Out,
    RawRequest,
    json_response,
    openai_answer,
    provider_config,
)

# the gateway's own routes: probes, metrics, and every admin module's (each under /admin/, behind the admin key)
GATEWAY_OWN = (
    {
        ("GET", "/health"),
        ("GET", "/healthz"),
        ("GET", "/ready"),
        ("GET", "/readyz"),
        ("GET", "/metrics"),
    }
    | {(r.method, r.path) for r in admin.ROUTES}
    | {(method, path) for method, path, _ in console.ROUTES}
)
assert all(r.path.startswith("/admin/") for r in admin.ROUTES)


def _concrete(route: ClientRoute) -> str:
    """A path a client could call on this route."""
    path = re.sub(r"\{\w+:path\}", "org/model-1", route.path)
    if not isinstance(route.kind, RouteKind):
        path = path.replace("{method}", next(iter(route.kind)))
    return re.sub(r"\{\w+\}", "model-1", path)


def test_the_apps_routes_are_exactly_the_specs_routes():
    declared = {(r.method, r.path) for s in PROTOCOLS.values() for r in s.routes}
    assert {(e.method, e.path) for e in ROUTES} == declared | GATEWAY_OWN


@pytest.mark.parametrize("spec", PROTOCOLS.values(), ids=list(PROTOCOLS))
def test_each_route_answers_errors_in_its_protocols_shape(spec):
    for route in spec.routes:
        owners = [
            s
            for s in PROTOCOLS.values()
            if any((r.method, r.path) == (route.method, route.path) for r in s.routes)
        ]
        endpoint, _ = ROUTES.match(route.method, _concrete(route))
        assert endpoint is not None and endpoint.path == route.path
        assert endpoint.errors is owners[0].codec  # a shared path: its first claimant's shape
        for owner in owners:  # a shared path reads every claimant's key styles
            assert owner.client_keys.bearer <= endpoint.keys.bearer
            assert set(owner.client_keys.headers) <= set(endpoint.keys.headers)
            assert set(owner.client_keys.query) <= set(endpoint.keys.query)
        assert ROUTES.errors_for(_concrete(route)) is endpoint.errors  # also before the method is known


def test_each_route_reads_a_key_only_where_its_protocols_sdks_put_it():
    def keys(method: str, path: str) -> KeyPresentation:
        endpoint, _ = ROUTES.match(method, path)
        assert endpoint is not None
        return endpoint.keys

    bearer_only = KeyPresentation()
    assert keys("POST", "/v1/chat/completions") == bearer_only
    assert keys("POST", "/v1/responses") == bearer_only
    assert keys("POST", "/api/chat") == bearer_only
    assert keys("POST", "/v1/messages") == KeyPresentation(headers=("x-api-key",))
    gemini = KeyPresentation(headers=("x-goog-api-key",), query=("key",))
    assert keys("POST", "/v1beta/models/m:generateContent") == gemini
    # `GET /v1/models` is OpenAI's, Anthropic's and Gemini's: all their clients' styles
    shared = keys("GET", "/v1/models")
    assert (
        shared.bearer and set(shared.headers) == {"x-api-key", "x-goog-api-key"} and shared.query == ("key",)
    )


def test_upstream_protocols_are_the_specs_that_can_be_called():
    assert UPSTREAM_PROTOCOLS == ("openai", "openai-responses", "anthropic", "gemini", "ollama")
    for name in UPSTREAM_PROTOCOLS:
        assert codec(name) is PROTOCOLS[name].codec and codec(name).name == name
    assert codec("ollama-generate").name == "ollama-generate"  # a route's own codec stays reachable


# ------------------------------------------------------------------ a protocol the gateway never heard of


class ToyCodec(OpenAIChatCodec):
    """OpenAI's wire format under another name, another error shape and another upstream path."""

    name = "toy"  # type: ignore[assignment]

    def encode_error(self, err: GatewayError) -> ErrorReply:
        return ErrorReply(err.status, orjson.dumps({"toy_error": err.kind.value}))

    def encode_request(self, req, upstream_model) -> UpstreamRequest:  # type: ignore[no-untyped-def]
        call = super().encode_request(req, upstream_model)
        call.path = "/toy/generate"
        return call


TOY = ProtocolSpec(
    name="toy",
    title="Toy",
    codec=ToyCodec(),
    routes=(
        ClientRoute("POST", "/toy/chat", RouteKind.CHAT),
        ClientRoute("GET", "/toy/models", RouteKind.LIST_MODELS),
        ClientRoute("GET", "/v1/models", RouteKind.LIST_MODELS),  # shared: its clients send x-toy-client
    ),
    upstream=Upstream(auth=lambda key: {"x-toy-key": key}, fixed_headers={"toy-version": "7"}),
    # its clients send `x-toy-auth` or `?key=`, never a Bearer header
    client_keys=KeyPresentation(bearer=False, headers=("x-toy-auth",), query=("key",)),
    marker_headers=("x-toy-client",),
    error_prefixes=("/toy/",),
    list_models=lambda models: b"toy:" + ",".join(m.id for m in models).encode(),
)


async def _toy_upstream_answers(req: RawRequest, out: Out) -> bool:
    return await out.send(json_response(openai_answer("toy says hi")))


def test_a_new_protocol_is_one_spec_routes_auth_and_upstream_headers():
    async def go(up: EvilUpstream) -> None:
        cfg = parse_config(
            provider_config("openai", up.url, keys=("acct-key-0001",)) + "keys:\n  - {key: client-key-01}\n"
        )
        cfg.providers[0].base_url = up.url  # the toy's upstream path has no /v1
        runtime = Runtime(cfg)
        runtime.providers["evil"] = HttpProvider(cfg.providers[0], spec=TOY)  # the provider speaks Toy
        await runtime.start()
        app = Gateway(cfg, runtime, routes=build([*PROTOCOLS.values(), TOY]))
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as c:
            # its route, its client-key style (`?key=`), its codec both ways
            r = await c.post(
                "/toy/chat?key=client-key-01",
                json={"model": "m", "messages": [{"role": "user", "content": "hi"}]},
            )
            assert r.status_code == 200, r.text
            assert r.json()["choices"][0]["message"]["content"] == "toy says hi"
            # its declared key header opens its route; a style it does not declare (even Bearer) does not
            chat = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
            r = await c.post("/toy/chat", json=chat, headers={"x-toy-auth": "client-key-01"})
            assert r.status_code == 200, r.text
            for undeclared in ({"authorization": "Bearer client-key-01"}, {"x-api-key": "client-key-01"}):
                r = await c.post("/toy/chat", json=chat, headers=undeclared)
                assert (r.status_code, r.json()) == (401, {"toy_error": "auth"})
            # … and it opens only the toy's routes (and the paths it shares), not another protocol's
            assert (await c.get("/api/tags", headers={"x-toy-auth": "client-key-01"})).status_code == 401
            r = await c.get("/v1/models", headers={"x-toy-auth": "client-key-01", "x-toy-client": "1"})
            assert r.content == b"toy:m"
            # its error shape, on its paths only
            r = await c.get("/toy/unknown?key=client-key-01")
            assert (r.status_code, r.json()) == (404, {"toy_error": "not_found"})
            assert "toy_error" not in (await c.get("/v1/unknown?key=client-key-01")).text
            # a shared path answers in its shape when its clients' marker is there, and only then
            auth = {"authorization": "Bearer client-key-01"}
            r = await c.get("/v1/models", headers={**auth, "x-toy-client": "1"})
            assert r.content == b"toy:m"
            assert (await c.get("/v1/models", headers=auth)).json()["object"] == "list"
            # `?key=` is the toy's and Gemini's; an Ollama route still refuses it
            assert (await c.get("/api/tags?key=client-key-01")).status_code == 401
            assert (await c.get("/api/tags", headers=auth)).status_code == 200
        await runtime.stop()

    with EvilUpstream(_toy_upstream_answers) as up:
        asyncio.run(go(up))
        assert len(up.requests) == 2  # both accepted chats; no refused one reached the upstream
        for sent in up.requests:
            assert sent.path == "/toy/generate"
            assert sent.headers["x-toy-key"] == "acct-key-0001" and sent.headers["toy-version"] == "7"
            assert "authorization" not in sent.headers and "x-api-key" not in sent.headers


# Byte-for-byte what each upstream protocol's provider sends (the official SDKs' own auth styles).
EXPECTED_AUTH = {
    "openai": {"authorization": "Bearer acct-key-0001"},
    "openai-responses": {"authorization": "Bearer acct-key-0001"},
    "ollama": {"authorization": "Bearer acct-key-0001"},
    "anthropic": {"x-api-key": "acct-key-0001", "anthropic-version": "2023-06-01"},
    "gemini": {"x-goog-api-key": "acct-key-0001"},
}
AUTH_NAMES = {"authorization", "x-api-key", "x-goog-api-key", "anthropic-version"}


@pytest.mark.parametrize("protocol", UPSTREAM_PROTOCOLS)
def test_each_upstream_protocol_sends_its_specs_auth_headers(protocol):
    async def answer(req: RawRequest, out: Out) -> bool:
        return await out.send(json_response({"error": {"message": "no"}}, status=418))

    async def go(url: str) -> None:
        cfg = parse_config(provider_config(protocol, url, keys=("acct-key-0001",)))
        provider = HttpProvider(cfg.providers[0])
        req = PROTOCOLS["openai"].codec.decode_request(
            b'{"model":"m","messages":[{"role":"user","content":"hi"}]}', RequestContext()
        )
        with pytest.raises(GatewayError):
            await provider.complete(req, "up-model", "acct-key-0001")
        await provider.aclose()

    with EvilUpstream(answer) as up:
        asyncio.run(go(up.url))
        sent = {k: v for k, v in up.requests[0].headers.items() if k in AUTH_NAMES}
    assert sent == EXPECTED_AUTH[protocol]
    spec = PROTOCOLS[protocol].upstream
    assert spec is not None and sent == {**spec.fixed_headers, **spec.auth("acct-key-0001")}
