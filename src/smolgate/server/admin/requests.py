"""`/admin/requests`: this replica's recent requests (console/recent.py: a bounded in-memory ring, newest first),
one of them with its wire capture when the playground asked for one, and `/admin/wire/{request_id}`: that
capture alone (console/wire.py). Names, ids and counts only; bodies only with `console.log_bodies`, and
captured credentials are redacted where they were recorded."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import msgspec

from ...console.recent import RequestView
from ...console.wire import Wire
from ...errors import not_found
from ..asgi import HttpRequest, Receive, Send
from .audit import limit_param
from .common import AdminRoute, reply

if TYPE_CHECKING:
    from ..runtime import Runtime

_RID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")  # what app.request_id accepts


class RequestList(msgspec.Struct, kw_only=True):
    requests: list[RequestView]


class RequestDetail(RequestView, kw_only=True, omit_defaults=True):
    wire: Wire | None = None  # when the playground captured it


def _rid(params: dict[str, str]) -> str:
    rid = params["request_id"]
    if not _RID.fullmatch(rid):  # never echo an arbitrary path segment
        raise not_found("no such request")
    return rid


async def list_requests(
    rt: Runtime, req: HttpRequest, params: dict[str, str], send: Send, receive: Receive
) -> None:
    limit = limit_param(req.query, default=100)
    await reply(send, RequestList(requests=rt.console.recent.latest(limit)))


async def get_request(
    rt: Runtime, req: HttpRequest, params: dict[str, str], send: Send, receive: Receive
) -> None:
    rid = _rid(params)
    found = rt.console.recent.get(rid)
    if found is None:
        raise not_found(f"no recent request '{rid}' on this replica")
    detail = RequestDetail(**msgspec.structs.asdict(found), wire=rt.console.wire.get(rid))
    await reply(send, detail)


async def get_wire(
    rt: Runtime, req: HttpRequest, params: dict[str, str], send: Send, receive: Receive
) -> None:
    rid = _rid(params)
    found = rt.console.wire.get(rid)
    if found is None:
        raise not_found(f"no wire capture of '{rid}' (captures last 10 minutes, the 50 newest)")
    await reply(send, found)


ROUTES = [
    AdminRoute(
        "GET",
        "/admin/requests",
        list_requests,
        "this replica's recent requests, newest first (console.recent_requests of them kept)",
        response=RequestList,
        query=("limit",),
    ),
    AdminRoute(
        "GET",
        "/admin/requests/{request_id}",
        get_request,
        "one recent request, with its wire capture when the playground asked for one",
        response=RequestDetail,
    ),
    AdminRoute(
        "GET",
        "/admin/wire/{request_id}",
        get_wire,
        "a playground request's wire capture: the client's request and response, every upstream call (credentials redacted)",
        response=Wire,
    ),
]
