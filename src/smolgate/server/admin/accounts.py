"""`/admin/accounts`: every provider account's live pool state (with Redis: the whole fleet's view), and the
accounts added at run time — add (the key stored encrypted, never returned), enable, disable, remove.

Each row carries the live state the console shows (account_live.py), and `POST /admin/accounts/{name}/test`
sends one short request through that account only (audited: it spends the account's quota).

Names are unique within a provider; when two providers have an account of the same name, `?provider=` says
which. A config account can be enabled or disabled here (run-time state of this replica) but not removed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import msgspec

from ...crypto import MasterKeyError
from ...errors import ErrorKind, GatewayError, invalid, not_found
from ...store import Store
from ...stored_accounts import NAME, AccountInputError, Limits, NewAccount, PublicAccount, add, public
from ..asgi import HttpRequest, Receive, Send
from .account_live import AccountRow, AccountTest, rows, test_account
from .common import AdminRoute, reply, source

if TYPE_CHECKING:
    from ..runtime import Runtime


class AccountList(msgspec.Struct, kw_only=True):
    accounts: list[AccountRow]
    stored: list[PublicAccount]  # the accounts added at run time (their keys are never shown)


class Changed(msgspec.Struct, kw_only=True):
    provider: str
    name: str
    enabled: bool | None = None  # None: removed
    stored: bool  # an account added at run time (persisted) or a config account (this replica, until restart)


def _store(rt: Runtime) -> Store:
    if rt.store is None:
        raise GatewayError(ErrorKind.OVERLOADED, "no store is open: accounts cannot be added or changed")
    return rt.store


async def list_accounts(
    rt: Runtime, req: HttpRequest, params: dict[str, str], send: Send, receive: Receive
) -> None:
    pools = rt.pools
    if pools is not None:
        await pools.refresh()
    stored = [public(r) for r in await rt.store.accounts()] if rt.store is not None else []
    await reply(send, AccountList(accounts=rows(pools), stored=stored))


async def add_account(
    rt: Runtime, req: HttpRequest, params: dict[str, str], send: Send, receive: Receive
) -> None:
    try:
        body = msgspec.json.decode(req.body or b"{}", type=NewAccount)
    except msgspec.DecodeError as exc:  # names the field, never its value
        raise invalid(f"invalid account: {exc}") from None
    store = _store(rt)
    limits = Limits(body.rpm, body.tpm, body.max_concurrency, body.weight)
    try:
        row = await add(
            store, rt.accounts.keyring(create=True), rt.cfg, body.provider, body.name, body.api_key, limits
        )
    except AccountInputError as exc:
        raise invalid(str(exc)) from None
    except MasterKeyError as exc:
        raise GatewayError(ErrorKind.INTERNAL, f"cannot encrypt the key: {exc}") from None
    await rt.accounts.refresh()  # into this replica's pool now; others pick it up from the store
    await rt.audit("account.add", f"{row.provider}/{row.name}", source(req), req.actor, id=row.id)
    await reply(send, public(row), 201)


async def _target(rt: Runtime, req: HttpRequest, name: str) -> tuple[str, bool]:
    """(provider, stored?) of the account `name` (and `?provider=`): 404 when none, 400 when ambiguous."""
    if not NAME.fullmatch(name):  # never echo an arbitrary path segment into errors and logs
        raise not_found("no account of that name")
    want = req.query.get("provider")
    stored = {r.provider for r in await rt.store.accounts() if r.name == name} if rt.store else set()
    config = {p.name for p in rt.cfg.providers for a in p.accounts if a.name == name}
    found = {p for p in stored | config if want in (None, p)}
    if not found:
        raise not_found(f"no account named '{name}'" + (" in that provider" if want else ""))
    if len(found) > 1:
        raise invalid(f"several providers have an account named '{name}': add ?provider=<name>")
    provider = found.pop()
    return provider, provider in stored


async def _set_enabled(rt: Runtime, req: HttpRequest, name: str, enabled: bool, send: Send) -> None:
    provider, stored = await _target(rt, req, name)
    if stored:
        store = _store(rt)
        for r in await store.accounts():
            if r.provider == provider and r.name == name:
                await store.update_account(msgspec.structs.replace(r, enabled=enabled))
        await rt.accounts.refresh()
    elif (pools := rt.current.pools) is not None:  # the pools new requests use
        pools.get(provider).set_enabled(name, enabled)
    action = "account.enable" if enabled else "account.disable"
    await rt.audit(action, f"{provider}/{name}", source(req), req.actor, stored=stored)
    await reply(send, Changed(provider=provider, name=name, enabled=enabled, stored=stored))


async def enable_account(
    rt: Runtime, req: HttpRequest, params: dict[str, str], send: Send, receive: Receive
) -> None:
    await _set_enabled(rt, req, params["name"], True, send)


async def disable_account(
    rt: Runtime, req: HttpRequest, params: dict[str, str], send: Send, receive: Receive
) -> None:
    await _set_enabled(rt, req, params["name"], False, send)


async def remove_account(
    rt: Runtime, req: HttpRequest, params: dict[str, str], send: Send, receive: Receive
) -> None:
    name = params["name"]
    provider, stored = await _target(rt, req, name)
    if not stored:
        raise invalid(f"'{name}' is a config account: remove it from the config file, then reload")
    store = _store(rt)
    for r in await store.accounts():
        if r.provider == provider and r.name == name:
            await store.delete_account(r.id)
    await rt.accounts.refresh()
    await rt.audit("account.remove", f"{provider}/{name}", source(req), req.actor)
    await reply(send, Changed(provider=provider, name=name, stored=True))


async def test(rt: Runtime, req: HttpRequest, params: dict[str, str], send: Send, receive: Receive) -> None:
    name = params["name"]
    provider, _ = await _target(rt, req, name)
    result = await test_account(rt, provider, name)
    await rt.audit(
        "account.test", f"{provider}/{name}", source(req), req.actor, ok=result.ok, status=result.status
    )
    await reply(send, result)


_PROVIDER = ("provider",)
ROUTES = [
    AdminRoute(
        "GET",
        "/admin/accounts",
        list_accounts,
        "every provider account and its pool state",
        response=AccountList,
    ),
    AdminRoute(
        "POST",
        "/admin/accounts",
        add_account,
        "add a provider account (its API key is stored encrypted and never returned)",
        body=NewAccount,
        response=PublicAccount,
    ),
    AdminRoute(
        "POST",
        "/admin/accounts/{name}/enable",
        enable_account,
        "enable an account now (also lifts a disable after the upstream rejected its key)",
        response=Changed,
        query=_PROVIDER,
    ),
    AdminRoute(
        "POST",
        "/admin/accounts/{name}/disable",
        disable_account,
        "disable an account now (a config account until the next start)",
        response=Changed,
        query=_PROVIDER,
    ),
    AdminRoute(
        "POST",
        "/admin/accounts/{name}/test",
        test,
        "send one short request through this account only (outside the pool: no slot, no health change)",
        response=AccountTest,
        query=_PROVIDER,
    ),
    AdminRoute(
        "DELETE",
        "/admin/accounts/{name}",
        remove_account,
        "remove an account added at run time",
        response=Changed,
        query=_PROVIDER,
    ),
]
