"""`/admin/keys`: virtual keys — list, create (the secret is in that answer only), show, revoke, rotate.

Answers never carry a key's hash; the secret appears once, in the create and rotate answers. Every change is
written to the audit log with the caller's address.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ... import vkeys_manage as manage
from ...errors import ErrorKind, GatewayError, invalid, not_found, shown
from ...store import KeyRow, Store
from ...vkeys import InvalidKeyField, public
from ..asgi import HttpRequest, Receive, Send
from .common import AdminRoute, json_body, reply, source

if TYPE_CHECKING:
    from ..runtime import Runtime


def _store(rt: Runtime) -> Store:
    if rt.store is None:
        raise GatewayError(ErrorKind.OVERLOADED, "virtual keys need the store, which is not open")
    return rt.store


def _pepper(rt: Runtime) -> bytes:
    if rt.vkeys is None:
        raise GatewayError(ErrorKind.OVERLOADED, "virtual keys need the store, which is not open")
    return rt.vkeys.pepper()


def _auditor(rt: Runtime, req: HttpRequest) -> manage.Audit:
    async def audit(action: str, target: str, **detail: Any) -> None:
        await rt.audit(action, target, source(req), req.actor, **detail)

    return audit


async def _key(rt: Runtime, params: dict[str, str]) -> KeyRow:
    row = await manage.find(_store(rt), params["id"])
    if row is None:
        raise not_found(f"no key '{shown(params['id'], '(the id in the path)')}'")
    return row


async def list_keys(
    rt: Runtime, req: HttpRequest, params: dict[str, str], send: Send, receive: Receive
) -> None:
    flag = req.query.get("include_revoked", "false").lower()
    if flag not in ("true", "false", "1", "0"):
        raise invalid("include_revoked must be true or false", param="include_revoked")
    store = _store(rt)
    rows = await store.keys(include_revoked=flag in ("true", "1"))
    await reply(send, {"keys": [public(r, await manage.spend(store, r)) for r in rows]})


async def create_key(
    rt: Runtime, req: HttpRequest, params: dict[str, str], send: Send, receive: Receive
) -> None:
    store = _store(rt)
    try:
        row, secret = await manage.create(store, _pepper(rt), json_body(req), _auditor(rt, req))
    except InvalidKeyField as exc:
        raise invalid(str(exc)) from None
    if rt.vkeys is not None:
        rt.vkeys.added()
    await reply(send, {"key": public(row, 0.0), "secret": secret}, status=201)


async def show_key(
    rt: Runtime, req: HttpRequest, params: dict[str, str], send: Send, receive: Receive
) -> None:
    row = await _key(rt, params)
    await reply(send, {"key": public(row, await manage.spend(_store(rt), row))})


async def revoke_key(
    rt: Runtime, req: HttpRequest, params: dict[str, str], send: Send, receive: Receive
) -> None:
    old = await _key(rt, params)
    row = await manage.revoke(_store(rt), old, _auditor(rt, req))
    if rt.vkeys is not None:
        rt.vkeys.forget(old)
    await reply(send, {"key": public(row)})


async def rotate_key(
    rt: Runtime, req: HttpRequest, params: dict[str, str], send: Send, receive: Receive
) -> None:
    old = await _key(rt, params)
    try:
        row, secret = await manage.rotate(_store(rt), _pepper(rt), old, _auditor(rt, req))
    except InvalidKeyField as exc:
        raise invalid(str(exc)) from None
    if rt.vkeys is not None:
        rt.vkeys.forget(old)
    await reply(send, {"key": public(row), "secret": secret})


ROUTES = [
    AdminRoute("GET", "/admin/keys", list_keys, "virtual keys (?include_revoked=true for all), with spend"),
    AdminRoute("POST", "/admin/keys", create_key, "create a virtual key; the answer holds its secret, once"),
    AdminRoute("GET", "/admin/keys/{id}", show_key, "one virtual key by id or name, with its period's spend"),
    AdminRoute("POST", "/admin/keys/{id}/revoke", revoke_key, "revoke a key (effective within seconds)"),
    AdminRoute(
        "POST", "/admin/keys/{id}/rotate", rotate_key, "a new secret for a key; the old one stops working"
    ),
]
