"""The route table: the real APIs' paths, each bound to its protocol's codec."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

import orjson

from ..errors import invalid, not_found
from ..protocols import codec
from ..protocols.base import ModelInfo, RequestContext
from .asgi import HttpRequest, Receive, Send, send_body
from . import responses_api

if TYPE_CHECKING:
    from .app import Gateway


def _module(name: str):  # type: ignore[no-untyped-def]
    return importlib.import_module(f"smolgate.protocols.{name}")


def _chat(proto: str):  # type: ignore[no-untyped-def]
    async def handler(
        gw: "Gateway", req: HttpRequest, params: dict[str, str], send: Send, receive: Receive
    ) -> None:
        await gw.chat(codec(proto), req, params, send, receive)

    return handler


async def gemini_method(
    gw: "Gateway", req: HttpRequest, params: dict[str, str], send: Send, receive: Receive
) -> None:
    method = params["method"]
    if method in ("generateContent", "streamGenerateContent"):
        await gw.chat(codec("gemini"), req, params, send, receive)
    elif method == "countTokens":
        canon = _module("gemini").decode_count_tokens_request(
            req.body, RequestContext(params, req.query, req.headers)
        )
        gw.runtime.router.check_name(canon.model)
        n = await gw.dispatcher.count_tokens(canon)
        await send_body(send, 200, _module("gemini").encode_count_tokens(n))
    else:
        raise not_found(f"unknown Gemini method ':{method}'")


async def anthropic_count(
    gw: "Gateway", req: HttpRequest, params: dict[str, str], send: Send, receive: Receive
) -> None:
    mod = _module("anthropic")
    canon = mod.decode_count_tokens_request(req.body, RequestContext(params, req.query, req.headers))
    gw.runtime.router.check_name(canon.model)
    await send_body(send, 200, mod.encode_count_tokens(await gw.dispatcher.count_tokens(canon)))


async def list_models(
    gw: "Gateway", req: HttpRequest, params: dict[str, str], send: Send, receive: Receive
) -> None:
    models = gw.model_infos()
    h = req.headers
    if "anthropic-version" in h:
        body = _module("anthropic").encode_models(models)
    elif "x-goog-api-key" in h or "key" in req.query or req.path.startswith("/v1beta"):
        body = _module("gemini").encode_models(models)
    else:
        body = _module("openai_chat").encode_models(models)
    await send_body(send, 200, body)


def _find(gw: "Gateway", model_id: str) -> ModelInfo:
    """A listed model, or a routable name (`provider/model`) described minimally; 404 otherwise."""
    gw.runtime.router.check_name(model_id)
    for m in gw.model_infos():
        if m.id == model_id:
            return m
    gw.runtime.router.resolve(model_id)  # raises the 404 for unknown names
    return ModelInfo(id=model_id)


async def get_model(
    gw: "Gateway", req: HttpRequest, params: dict[str, str], send: Send, receive: Receive
) -> None:
    info = _find(gw, params["id"])
    await send_body(send, 200, _module("openai_chat").encode_model(info))


async def ollama_tags(
    gw: "Gateway", req: HttpRequest, params: dict[str, str], send: Send, receive: Receive
) -> None:
    await send_body(send, 200, _module("ollama").encode_tags(gw.model_infos()))


async def ollama_show(
    gw: "Gateway", req: HttpRequest, params: dict[str, str], send: Send, receive: Receive
) -> None:
    try:
        body = orjson.loads(req.body or b"{}")
    except orjson.JSONDecodeError:
        raise invalid("request body is not valid JSON") from None
    name = body.get("model") or body.get("name") if isinstance(body, dict) else None
    if not isinstance(name, str):
        raise invalid("missing required field 'model'", param="model")
    info = _find(gw, name)
    await send_body(send, 200, _module("ollama").encode_show(info))


async def ollama_version(
    gw: "Gateway", req: HttpRequest, params: dict[str, str], send: Send, receive: Receive
) -> None:
    await send_body(send, 200, _module("ollama").encode_version())


async def health(
    gw: "Gateway", req: HttpRequest, params: dict[str, str], send: Send, receive: Receive
) -> None:
    await send_body(send, 200, b'{"status":"ok"}')


async def root(gw: "Gateway", req: HttpRequest, params: dict[str, str], send: Send, receive: Receive) -> None:
    await send_body(send, 200, b"smolgate is running", "text/plain")  # Ollama clients probe GET /


async def accounts(
    gw: "Gateway", req: HttpRequest, params: dict[str, str], send: Send, receive: Receive
) -> None:
    pools = gw.runtime.pools
    if pools is not None:
        await pools.refresh()  # with Redis: the whole fleet's view, not just this replica's
    snap = pools.snapshot() if pools is not None else []
    await send_body(send, 200, orjson.dumps({"accounts": snap}, default=_plain))


def _plain(obj):  # type: ignore[no-untyped-def]
    import msgspec

    return msgspec.to_builtins(obj)


def register(gw: "Gateway") -> None:
    r = gw.route
    r("POST", "/v1/chat/completions", _chat("openai"), "openai")
    r("POST", "/chat/completions", _chat("openai"), "openai")
    responses_api.register(gw)  # POST /v1/responses and the stored-response routes
    r("GET", "/v1/models", list_models, "openai")
    r("GET", "/v1beta/models", list_models, "gemini")
    r("POST", "/v1/messages", _chat("anthropic"), "anthropic")
    r("POST", "/v1/messages/count_tokens", anthropic_count, "anthropic")
    r("POST", "/api/chat", _chat("ollama"), "ollama")
    r("POST", "/api/generate", _chat("ollama-generate"), "ollama")
    r("GET", "/api/tags", ollama_tags, "ollama")
    r("POST", "/api/show", ollama_show, "ollama")
    r("GET", "/api/version", ollama_version, "ollama")
    r("GET", "/health", health, "openai")
    r("GET", "/healthz", health, "openai")
    r("GET", "/", root, "ollama")
    r("HEAD", "/", root, "ollama")
    r("GET", "/admin/accounts", accounts, "openai")
    # Gemini's `models/{model}:{method}` under both API versions (google-genai ≥3 uses /v1).
    r("POST", "/v1beta/models/{model}:{method}", gemini_method, "gemini")
    r("POST", "/v1/models/{model}:{method}", gemini_method, "gemini")
    r("GET", "/v1/models/{id:path}", get_model, "openai")
