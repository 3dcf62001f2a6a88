"""Everything a running gateway holds: router, providers, pools, dispatcher, client limits."""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from .. import observability
from ..config import AnyProvider, Config, LocalProviderConfig
from ..dispatch import Dispatcher
from ..pool import ClientLimiter, Pools
from ..pricing import Pricing
from ..protocols.base import ModelInfo
from ..providers.base import Provider
from ..providers.http import HttpProvider
from ..routing import Route, Router
from ..store import AuditRow, Store
from ..store.ledger import LedgerWriter
from ..store.open import open_store
from ..telemetry import Observer, RequestRecord
from ..vkeys import load_pepper
from .drain import Drain
from .vkeys_auth import KeyService
from .vkeys_budget import Budgets

if TYPE_CHECKING:
    from ..observability.metrics import Metrics
    from ..observability.traces import Tracer

log = logging.getLogger("smolgate")


def build_provider(cfg: AnyProvider) -> Provider:
    if isinstance(cfg, LocalProviderConfig):
        from ..providers.local import LocalProvider  # imports torch: only when a local provider exists

        return LocalProvider(cfg)
    return HttpProvider(cfg)


class Runtime:
    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.router = Router(cfg)
        self.providers: dict[str, Provider] = {p.name: build_provider(p) for p in cfg.providers}
        self.pools: Pools | None = None
        self._dispatcher: Dispatcher | None = None
        self.limiter: ClientLimiter | None = None
        self.observers: list[Observer] = []  # told of every finished request (ledger, metrics, access log)
        self.store: Store | None = None  # keys, ledger, accounts, audit (opened in start())
        self.pricing = Pricing(cfg)  # cost per request, for the ledger (and its count of unpriced models)
        self.ledger: LedgerWriter | None = None  # the usage ledger's write-behind buffer (cfg.ledger.enabled)
        self.vkeys: KeyService | None = None  # virtual keys (opened with the store)
        # USD of a finished request, for the ledger and key budgets alike
        self.cost_of: Callable[[RequestRecord], float] = self.pricing.cost_of
        self.drain = Drain()  # requests in flight, for graceful shutdown
        self.metrics: Metrics | None = None  # /metrics (observability.install, in start())
        self.tracer: Tracer | None = None  # only with observability.traces.endpoint

    @property
    def dispatcher(self) -> Dispatcher:
        assert self._dispatcher is not None, "Runtime.start() was not awaited"
        return self._dispatcher

    async def start(self) -> None:
        if self._dispatcher is not None:
            return
        if self.store is None:
            self.store = await open_store(self.cfg)
            # the price table's import takes a while: off the loop, before the first request needs it
            asyncio.get_running_loop().run_in_executor(None, self.pricing.warm)
        if self.cfg.ledger.enabled and self.ledger is None:
            self.ledger = LedgerWriter(self.store, self.cfg.ledger, lambda rec: self.cost_of(rec))
            self.ledger.start()
            self.observers.append(self.ledger)
        self.pools = await Pools.create(
            self.cfg.providers, self.cfg.state.reveal() if self.cfg.state else None
        )
        if self.cfg.keys:  # client limits share the pools' state: one rpm window across replicas
            self.limiter = ClientLimiter(self.cfg.keys, self.pools)
        self._dispatcher = Dispatcher(self.cfg, self.router, self.providers, self.pools)
        observability.install(self)
        for p in self.providers.values():
            start = getattr(p, "start", None)
            if start is not None:
                await start()
            for info in getattr(p, "model_infos", lambda: [])():
                self.router.add(info.id.split("/", 1)[-1], [Route(p.name, "default")])
        await self.start_keys(self.store)
        # Everything allocated at start-up lives for the whole process: keep it out of the GC's scans, so
        # collections during traffic stay short (tail latency).
        gc.freeze()
        names = ", ".join(m.id for m in self.model_infos()) or "none"
        log.info(
            "smolgate ready: %d providers; models: %s; pool state: %s; store: %s",
            len(self.providers),
            names,
            self.cfg.state_display,
            self.store.url_display,
        )

    async def start_keys(self, store: Store) -> None:
        """Virtual keys, checked against `store`, limited by the shared client limiter, budgets by cost."""
        if self.limiter is None:
            self.limiter = ClientLimiter([], self.pools)
        budgets = Budgets(store, self.limiter.shared)
        if self.ledger is not None:
            self.ledger.on_written.append(budgets.written)
        self.vkeys = KeyService(
            store, lambda: load_pepper(self.cfg), self.limiter, budgets, lambda rec: self.cost_of(rec)
        )
        await self.vkeys.any_keys()
        self.observers.append(self.vkeys)

    async def stop(self) -> None:
        if self.tracer is not None:  # export the queued spans (off the loop: it may wait on the network)
            await asyncio.to_thread(self.tracer.shutdown)
        for p in self.providers.values():
            await p.aclose()
        if self._dispatcher is not None:
            await self._dispatcher.signatures.store.close()
        if self.pools is not None:
            await self.pools.close()
        if self.ledger is not None:  # after the providers: requests still finishing have added their rows
            await self.ledger.stop()
            self.observers.remove(self.ledger)
            self.ledger = None
        if self.vkeys is not None:
            self.observers.remove(self.vkeys)
            self.vkeys = None
        if self.store is not None:
            await self.store.close()
            self.store = None

    async def audit(
        self,
        action: str,
        target: str | None = None,
        source: str | None = None,
        actor: str = "admin-api",
        **detail: str | int | float | bool | None,
    ) -> None:
        """Write one change to the audit log (never a secret in `detail`)."""
        if self.store is not None:
            await self.store.audit(
                AuditRow(
                    ts=time.time(), actor=actor, action=action, target=target, source=source, detail=detail
                )
            )

    def model_infos(self) -> list[ModelInfo]:
        infos = self.router.models()
        for p in self.providers.values():
            extra = getattr(p, "model_infos", None)
            if extra is not None:
                infos.extend(extra())
        return infos
