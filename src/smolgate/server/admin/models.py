"""`/admin/models`: every alias as the router walks it — its targets in order, its fallbacks, and the accounts
that could serve each target now (names and states only)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import msgspec

from ..asgi import HttpRequest, Receive, Send
from .common import AdminRoute, account_counts, reply

if TYPE_CHECKING:
    from ..runtime import Runtime


class TargetView(msgspec.Struct, kw_only=True):
    provider: str
    model: str
    protocol: str  # the upstream protocol the provider speaks ("local" for the engine)
    accounts: int  # accounts the provider has
    usable: int  # of which healthy or half-open now (this replica's view)


class AliasView(msgspec.Struct, kw_only=True):
    name: str
    targets: list[TargetView]  # its own targets, in order
    fallbacks: list[str]  # aliases tried after its targets
    attempt_order: list[str]  # every provider/model an attempt may go to, in order (fallbacks walked)


class ModelsAnswer(msgspec.Struct, kw_only=True):
    models: list[AliasView]


async def list_models(
    rt: Runtime, req: HttpRequest, params: dict[str, str], send: Send, receive: Receive
) -> None:
    total, usable = account_counts(rt.pools)

    def target(provider: str, model: str) -> TargetView:
        p = rt.providers.get(provider)
        return TargetView(
            provider=provider,
            model=model,
            protocol=p.protocol if p is not None else "unknown",
            accounts=total[provider],
            usable=usable[provider],
        )

    views = [
        AliasView(
            name=m.name,
            targets=[target(t.provider, t.model) for t in m.targets],
            fallbacks=list(m.fallbacks),
            attempt_order=[f"{r.provider}/{r.model}" for r in rt.router.resolve(m.name)],
        )
        for m in rt.cfg.models
    ]
    await reply(send, ModelsAnswer(models=views))


ROUTES = [
    AdminRoute(
        "GET",
        "/admin/models",
        list_models,
        "every model alias: its targets in order, fallbacks, and how many accounts could serve each now",
        response=ModelsAnswer,
    )
]
