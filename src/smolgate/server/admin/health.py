"""`/admin/health`: what an operator wants at a glance — the probes' checks with the detail they leave out
(which store, the ledger's counters, each provider's usable accounts). Names and counts only, never a key."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import msgspec

from ... import __version__
from ..asgi import HttpRequest, Receive, Send
from ..probes import engine_check, store_check
from .common import AdminRoute, account_counts, reply

if TYPE_CHECKING:
    from ..runtime import Runtime

STARTED = time.time()


class LedgerView(msgspec.Struct, kw_only=True):
    enabled: bool
    buffered: int = 0  # rows waiting for the next flush
    written: int = 0
    dropped: int = 0  # lost to a full buffer
    rejected: int = 0  # refused by the database


class ProviderView(msgspec.Struct, kw_only=True):
    name: str
    protocol: str
    accounts: int
    usable: int  # healthy or half-open now


class HealthAnswer(msgspec.Struct, kw_only=True):
    status: str  # "ok" | "degraded" (the store unreachable, or a provider without a usable account)
    version: str
    uptime_s: float
    store: str  # its URL, password masked
    store_status: str  # ok | unreachable
    state: str  # the shared pool state (Redis URL, password masked) or in-process
    engine: str  # none | loading | ok
    shutting_down: bool
    ledger: LedgerView
    providers: list[ProviderView]


async def health(rt: Runtime, req: HttpRequest, params: dict[str, str], send: Send, receive: Receive) -> None:
    total, usable = account_counts(rt.pools)
    providers = [
        ProviderView(name=n, protocol=p.protocol, accounts=total[n], usable=usable[n])
        for n, p in rt.providers.items()
    ]
    led = rt.ledger
    ledger = (
        LedgerView(
            enabled=True,
            buffered=len(led.buffer),
            written=led.written,
            dropped=led.dropped,
            rejected=led.rejected,
        )
        if led is not None
        else LedgerView(enabled=False)
    )
    store_status = await store_check(rt)
    degraded = store_status == "unreachable" or any(p.usable == 0 for p in providers if p.accounts)
    await reply(
        send,
        HealthAnswer(
            status="degraded" if degraded else "ok",
            version=__version__,
            uptime_s=round(time.time() - STARTED, 1),
            store=rt.store.url_display if rt.store is not None else "none",
            store_status=store_status,
            state=rt.cfg.state_display,
            engine=engine_check(rt),
            shutting_down=rt.drain.stopping,
            ledger=ledger,
            providers=providers,
        ),
    )


ROUTES = [
    AdminRoute(
        "GET",
        "/admin/health",
        health,
        "the gateway's state in detail: store, ledger counters, usable accounts per provider",
        response=HealthAnswer,
    )
]
