"""`GET /admin/openapi.json`: the admin API as an OpenAPI 3.1 document, generated from the `AdminRoute` list
(method, path, summary, query parameters, and the JSON schemas msgspec derives from each route's body and
response types), with the admin key as its security scheme."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import msgspec

from ... import __version__
from ..asgi import HttpRequest, Receive, Send
from .common import AdminRoute, reply

if TYPE_CHECKING:
    from ..runtime import Runtime

_PARAM = re.compile(r"\{(\w+)\}")
_REF = "#/components/schemas/{name}"
_ERRORS = {
    "400": "the request is invalid (the message says which field)",
    "401": "missing or invalid admin key (or console session)",
    "403": "not the admin key, no admin key configured and the caller is not on loopback, or a console "
    "session's state change without its x-smolgate-csrf header",
    "404": "no such resource",
}


class ErrorBody(msgspec.Struct):
    """Every admin error: `{"error": {"type": …, "message": …}}`."""

    error: dict[str, Any]


def _operation(r: AdminRoute, schemas: dict[type, Any]) -> dict[str, Any]:
    op: dict[str, Any] = {
        "summary": r.summary,
        "operationId": f"{r.method.lower()}_"
        + re.sub(r"\W+", "_", r.path.removeprefix("/admin/")).strip("_"),
        "tags": [r.path.split("/")[2]],
    }
    params = [
        {"name": n, "in": "path", "required": True, "schema": {"type": "string"}}
        for n in _PARAM.findall(r.path)
    ]
    params += [{"name": n, "in": "query", "required": False, "schema": {"type": "string"}} for n in r.query]
    if params:
        op["parameters"] = params
    if r.body is not None:
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": schemas[r.body]}}}
    ok: dict[str, Any] = {"description": "success"}
    if r.response is not None:
        ok["content"] = {"application/json": {"schema": schemas[r.response]}}
    error = {"description": "", "content": {"application/json": {"schema": schemas[ErrorBody]}}}
    op["responses"] = {"201" if r.method == "POST" and r.body is not None else "200": ok} | {
        code: error | {"description": why} for code, why in _ERRORS.items()
    }
    return op


def document(routes: list[AdminRoute]) -> dict[str, Any]:
    types = sorted({t for r in routes for t in (r.body, r.response) if t is not None} | {ErrorBody}, key=str)
    refs, components = msgspec.json.schema_components(types, ref_template=_REF)
    schemas = dict(zip(types, refs, strict=True))
    paths: dict[str, dict[str, Any]] = {}
    for r in routes:
        paths.setdefault(r.path, {})[r.method.lower()] = _operation(r, schemas)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "smolgate admin API",
            "version": __version__,
            "description": "Operators' routes of a smolgate gateway. Every change is written to the audit log.",
        },
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                "adminBearer": {"type": "http", "scheme": "bearer", "description": "server.admin_key"},
                "adminHeader": {"type": "apiKey", "in": "header", "name": "x-api-key"},
                "consoleSession": {
                    "type": "apiKey",
                    "in": "cookie",
                    "name": "smolgate_session",
                    "description": "a console sign-in (POST /ui/api/session); state changes also need the "
                    "x-smolgate-csrf header",
                },
            },
        },
        "security": [{"adminBearer": []}, {"adminHeader": []}, {"consoleSession": []}],
    }


_CACHE: dict[int, dict[str, Any]] = {}


async def openapi(
    rt: Runtime, req: HttpRequest, params: dict[str, str], send: Send, receive: Receive
) -> None:
    from . import ROUTES  # the package's list includes this module's own route

    doc = _CACHE.get(id(ROUTES))
    if doc is None:
        doc = _CACHE[id(ROUTES)] = document(ROUTES)
    await reply(send, doc)


ROUTES = [AdminRoute("GET", "/admin/openapi.json", openapi, "this document: the admin API as OpenAPI 3.1")]
