"""`/admin/routes`: each alias with its ordered targets, its fallbacks, and the account that would serve its
next request (this replica's view); `POST /admin/routes/{alias}/try`: one short request through the alias, as a
client's would go (retries and fallbacks included), recorded in the ledger (key id "admin") and audited."""

from __future__ import annotations

import copy
import time
from typing import TYPE_CHECKING

import msgspec

from ...canonical import Text
from ...errors import GatewayError, not_found
from ...pool import AccountPool
from ...pool.health import Gate
from ..asgi import HttpRequest, Receive, Send
from .account_live import probe_request
from .common import AdminRoute, reply, source

if TYPE_CHECKING:
    from ..runtime import Runtime

ADMIN_KEY_ID = "admin"


class RouteTarget(msgspec.Struct, kw_only=True):
    provider: str
    model: str
    protocol: str  # what the provider speaks upstream ("local" for the engine)


class NextAccount(msgspec.Struct, kw_only=True):
    provider: str
    account: str


class RouteView(msgspec.Struct, kw_only=True):
    alias: str
    targets: list[RouteTarget]
    fallbacks: list[str]
    next_account: NextAccount | None  # None: no target has a usable account now


class RouteList(msgspec.Struct, kw_only=True):
    routes: list[RouteView]


class TryResult(msgspec.Struct, kw_only=True, omit_defaults=True):
    ok: bool
    status: int
    latency_ms: float
    provider: str | None
    account: str | None
    text: str | None = None
    error: str | None = None


def peek(pool: AccountPool) -> str | None:
    """The account the pool's strategy would pick now, without taking it: the usable accounts under their
    limits, offered to a copy of the strategy (round-robin counters and weights are left as they are)."""
    now = time.time()
    cands = [
        a
        for a in pool.accounts
        if a.cfg.enabled and a.health.gate(now) is not Gate.BLOCKED and a.capped(now, 0) is None
    ]
    if len(cands) <= 1:
        return cands[0].name if cands else None
    pick = copy.deepcopy(pool._pick)  # the strategy's own state is private to the pool; a copy is ours
    saved = [a.swrr for a in cands]  # the weighted strategy's per-account credit, put back after the look
    try:
        return pick(cands, now).name
    finally:
        for a, credit in zip(cands, saved, strict=True):
            a.swrr = credit


def _next(rt: Runtime, alias: str) -> NextAccount | None:
    pools = rt.pools
    if pools is None:
        return None
    for r in rt.router.resolve(alias):  # the attempt order: targets, then fallbacks' targets
        try:
            name = peek(pools.get(r.provider))
        except GatewayError:  # a provider without a pool
            continue
        if name is not None:
            return NextAccount(provider=r.provider, account=name)
    return None


async def list_routes(
    rt: Runtime, req: HttpRequest, params: dict[str, str], send: Send, receive: Receive
) -> None:
    def protocol(provider: str) -> str:
        p = rt.providers.get(provider)
        return p.protocol if p is not None else "unknown"

    views = [
        RouteView(
            alias=m.name,
            targets=[
                RouteTarget(provider=t.provider, model=t.model, protocol=protocol(t.provider))
                for t in m.targets
            ],
            fallbacks=list(m.fallbacks),
            next_account=_next(rt, m.name),
        )
        for m in rt.cfg.models
    ]
    await reply(send, RouteList(routes=views))


async def try_route(
    rt: Runtime, req: HttpRequest, params: dict[str, str], send: Send, receive: Receive
) -> None:
    alias = params["alias"]
    if not any(m.name == alias for m in rt.cfg.models):
        raise not_found("no model alias of that name")
    rec = req.record
    assert rec is not None  # the app gives every request one
    # a model call like a client's: the ledger records it (and its cost) under the admin's key id
    rec.generation, rec.alias, rec.key_id = True, alias, ADMIN_KEY_ID
    t0 = time.perf_counter()
    try:
        resp = await rt.dispatcher.complete(probe_request(alias), rec)
    except GatewayError as exc:
        result = TryResult(
            ok=False,
            status=exc.status,
            latency_ms=round((time.perf_counter() - t0) * 1000, 1),
            provider=rec.last.provider if rec.last else None,
            account=rec.last.account if rec.last else None,
            error=exc.message,
        )
    else:
        result = TryResult(
            ok=True,
            status=200,
            latency_ms=round((time.perf_counter() - t0) * 1000, 1),
            provider=rec.last.provider if rec.last else None,
            account=rec.last.account if rec.last else None,
            text="".join(b.text for b in resp.content if isinstance(b, Text))[:2000],
        )
    await rt.audit("route.try", alias, source(req), req.actor, ok=result.ok, status=result.status)
    await reply(send, result)


ROUTES = [
    AdminRoute(
        "GET",
        "/admin/routes",
        list_routes,
        "every model alias: its targets in order, its fallbacks, and the account that would serve it next",
        response=RouteList,
    ),
    AdminRoute(
        "POST",
        "/admin/routes/{alias}/try",
        try_route,
        "send one short request through this alias (retries and fallbacks as a client's; in the ledger)",
        response=TryResult,
    ),
]
