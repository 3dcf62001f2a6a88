"""The gateway's routes: every protocol's declared client routes (its spec's `routes`), each bound to the
HTTP-only handler of its kind, plus the gateway's own (health, admin).

Handlers get the runtime and the request, and speak HTTP; what a body means is the protocol's (its codec,
its listing and count-tokens functions). A path several protocols claim (`GET /v1/models`) answers in the
shape of the first whose markers the request carries, else of the first claimant (registry order).
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Iterable
from typing import TYPE_CHECKING, TypeVar

import orjson

from ..canonical import Event, Origin, Request
from ..console import endpoints as console
from ..errors import invalid, not_found
from ..policies import response_headers
from ..policies.privacy import requested
from ..protocols import PROTOCOLS
from ..protocols.base import Codec, ModelInfo, RequestContext
from ..protocols.spec import ClientRoute, CountTokens, KeyPresentation, ProtocolSpec, RouteKind
from ..routing import unknown_model
from ..signatures import owner_id
from ..telemetry import RequestRecord
from . import admin, probes, responses_api
from .asgi import HttpRequest, Receive, Send, send_body, send_stream, unless_gone
from .auth import OWN_KEYS
from .drain import Drain
from .streaming import encode_events
from .table import Endpoint, Handler, RouteTable
from .vkeys_auth import allow_model, owner_key

if TYPE_CHECKING:
    from collections.abc import Callable

    from .runtime import Runtime

T = TypeVar("T")


# ------------------------------------------------------------------ handlers, one per route kind


def _chat(c: Codec) -> Handler:
    """Every generation endpoint: decode → dispatch → encode (whole, or streamed as events arrive)."""

    async def chat(
        rt: Runtime, req: HttpRequest, params: dict[str, str], send: Send, receive: Receive
    ) -> None:
        rec = req.record
        if rec is not None:
            rec.generation, rec.client_protocol = True, c.name
        canon = c.decode_request(req.body, RequestContext(params, req.query, req.headers))
        if rec is not None:
            rec.alias, rec.stream = canon.model, canon.stream
        allow_model(req, canon.model)
        rt.router.check_name(canon.model)
        # who asks, for state kept across turns (signatures.py): the protocol and a hash of the client key
        canon.origin = Origin(
            c.name, owner_id(owner_key(req)), requested(req.privacy, req.headers, canon.metadata)
        )
        cache = req.headers.get("x-smolgate-cache")
        if not canon.stream:
            resp = await unless_gone(receive, rt.dispatcher.complete(canon, rec, cache))
            await send_body(send, 200, c.encode_response(resp, canon), headers=response_headers(rec))
            return
        events = rt.dispatcher.stream(canon, rec, cache)
        first = await unless_gone(receive, anext(events))  # errors before it: a plain error response
        chunks = _encode(c, canon, first, events, rt.drain, rec)
        await send_stream(send, receive, chunks, c.stream_media_type, response_headers(rec))

    return chat


async def _encode(
    c: Codec,
    canon: Request,
    first: Event,
    events: AsyncIterator[Event],
    drain: Drain,
    rec: RequestRecord | None,
) -> AsyncIterator[bytes]:
    enc = c.stream_encoder(canon)
    async for chunk in encode_events(enc, first, events, drain, rec):
        yield chunk
    yield enc.close()


def _count_tokens(count: CountTokens) -> Handler:
    async def handler(
        rt: Runtime, req: HttpRequest, params: dict[str, str], send: Send, receive: Receive
    ) -> None:
        canon = count.decode(req.body, RequestContext(params, req.query, req.headers))
        canon.origin = Origin("count_tokens", privacy=requested(req.privacy, req.headers, canon.metadata))
        allow_model(req, canon.model)
        rt.router.check_name(canon.model)
        await send_body(send, 200, count.encode(await rt.dispatcher.count_tokens(canon)))

    return handler


def _list_models(encode: Callable[[list[ModelInfo]], bytes]) -> Handler:
    async def handler(
        rt: Runtime, req: HttpRequest, params: dict[str, str], send: Send, receive: Receive
    ) -> None:
        infos = rt.model_infos()
        if req.models is not None:  # a virtual key limited to some models lists only those
            infos = [m for m in infos if m.id in req.models]
        await send_body(send, 200, encode(infos))

    return handler


def _find(rt: Runtime, req: HttpRequest, model_id: str) -> ModelInfo:
    """A listed model, or a routable name (`provider/model`) described minimally; 404 otherwise — also for a
    model the request's virtual key may not use (as the listing hides it, a lookup does not confirm it)."""
    rt.router.check_name(model_id)
    if req.models is not None and model_id not in req.models:
        raise unknown_model(model_id)
    for m in rt.model_infos():
        if m.id == model_id:
            return m
    rt.router.resolve(model_id)  # raises the 404 for unknown names
    return ModelInfo(id=model_id)


def _get_model(describe: Callable[[ModelInfo], bytes]) -> Handler:
    async def handler(
        rt: Runtime, req: HttpRequest, params: dict[str, str], send: Send, receive: Receive
    ) -> None:
        await send_body(send, 200, describe(_find(rt, req, params["id"])))

    return handler


def _show_model(describe: Callable[[ModelInfo], bytes]) -> Handler:
    async def handler(
        rt: Runtime, req: HttpRequest, params: dict[str, str], send: Send, receive: Receive
    ) -> None:
        try:
            body = orjson.loads(req.body or b"{}")
        except orjson.JSONDecodeError:
            raise invalid("request body is not valid JSON") from None
        name = body.get("model") or body.get("name") if isinstance(body, dict) else None
        if not isinstance(name, str):
            raise invalid("missing required field 'model'", param="model")
        await send_body(send, 200, describe(_find(rt, req, name)))

    return handler


def _fixed(body: bytes, media_type: str) -> Handler:
    async def handler(
        rt: Runtime, req: HttpRequest, params: dict[str, str], send: Send, receive: Receive
    ) -> None:
        await send_body(send, 200, body, media_type)

    return handler


_RESPONSES: dict[RouteKind, Handler] = {
    RouteKind.RESPONSES_CREATE: responses_api.create,
    RouteKind.RESPONSES_GET: responses_api.retrieve,
    RouteKind.RESPONSES_DELETE: responses_api.delete,
    RouteKind.RESPONSES_INPUT_ITEMS: responses_api.input_items,
}


# ------------------------------------------------------------------ binding the specs' routes


def _needs(value: T | None, spec: ProtocolSpec, what: str) -> T:
    if value is None:
        raise ValueError(f"protocol '{spec.name}' declares a route that needs its {what}")
    return value


def _handler(spec: ProtocolSpec, route: ClientRoute, kind: RouteKind) -> Handler:
    if kind is RouteKind.CHAT:
        return _chat(route.codec or spec.codec)
    if kind is RouteKind.COUNT_TOKENS:
        return _count_tokens(_needs(spec.count_tokens, spec, "count_tokens"))
    if kind is RouteKind.LIST_MODELS:
        return _list_models(_needs(spec.list_models, spec, "list_models"))
    if kind is RouteKind.GET_MODEL:
        return _get_model(_needs(spec.describe_model, spec, "describe_model"))
    if kind is RouteKind.SHOW_MODEL:
        return _show_model(_needs(spec.describe_model, spec, "describe_model"))
    if kind is RouteKind.FIXED:
        return _fixed(route.body, route.media_type)
    return _RESPONSES[kind]


def _bind(spec: ProtocolSpec, route: ClientRoute) -> Handler:
    if isinstance(route.kind, RouteKind):
        return _handler(spec, route, route.kind)
    methods = {name: _handler(spec, route, kind) for name, kind in route.kind.items()}

    async def custom_method(
        rt: Runtime, req: HttpRequest, params: dict[str, str], send: Send, receive: Receive
    ) -> None:
        method = params["method"]
        handler = methods.get(method)
        if handler is None:
            raise not_found(f"unknown {spec.title} method ':{method}'")
        await handler(rt, req, params, send, receive)

    return custom_method


def _shared(claimants: list[tuple[ProtocolSpec, Handler]]) -> Handler:
    """One path, several protocols: the first whose markers the request carries answers, else the first."""
    if len(claimants) == 1:
        return claimants[0][1]
    fallback = claimants[0][1]
    marked = [(spec, h) for spec, h in claimants if spec.marker_headers or spec.marker_query]

    async def handler(
        rt: Runtime, req: HttpRequest, params: dict[str, str], send: Send, receive: Receive
    ) -> None:
        for spec, h in marked:
            if spec.marks(req.headers, req.query):
                return await h(rt, req, params, send, receive)
        await fallback(rt, req, params, send, receive)

    return handler


def _keys(claimants: Iterable[ProtocolSpec]) -> KeyPresentation:
    """Where a path's clients may put their key: every claimant protocol's styles."""
    return functools.reduce(KeyPresentation.union, (s.client_keys for s in claimants))


def build(specs: Iterable[ProtocolSpec]) -> RouteTable:
    """The route table for these protocols (in precedence order) and the gateway's own routes."""
    specs = tuple(specs)
    claims: dict[tuple[str, str], list[tuple[ProtocolSpec, Handler]]] = {}
    for spec in specs:
        for route in spec.routes:
            claims.setdefault((route.method, route.path), []).append((spec, _bind(spec, route)))
    endpoints = [
        Endpoint(method, path, _shared(c), c[0][0].codec, _keys(spec for spec, _ in c))
        for (method, path), c in claims.items()
    ]
    prefixes = {prefix: spec.codec for spec in reversed(specs) for prefix in spec.error_prefixes}
    if "/" not in prefixes:
        raise ValueError("no protocol claims the error prefix '/' (the default error shape)")
    own = prefixes["/"]  # the gateway's own routes answer errors in its default shape
    endpoints += [
        Endpoint("GET", "/health", probes.health, own, OWN_KEYS),
        Endpoint("GET", "/healthz", probes.health, own, OWN_KEYS),
        Endpoint("GET", "/ready", probes.ready, own, OWN_KEYS),
        Endpoint("GET", "/readyz", probes.ready, own, OWN_KEYS),
        Endpoint("GET", "/metrics", probes.metrics, own, OWN_KEYS),
    ]
    endpoints += [Endpoint(r.method, r.path, r.handler, own, OWN_KEYS) for r in admin.ROUTES]
    endpoints += [Endpoint(method, path, h, own, OWN_KEYS) for method, path, h in console.ROUTES]
    return RouteTable(endpoints, prefixes)


ROUTES = build(PROTOCOLS.values())
