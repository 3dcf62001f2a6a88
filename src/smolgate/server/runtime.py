"""Everything a running gateway holds: router, providers, pools, dispatcher, client limits.

Those five come from the config, so they live together in one `Generation`. A config reload (reload.py) builds
a new generation and swaps it in for new requests; each request is pinned to the generation current when it
arrived (`enter`/`leave`, a context variable), so a stream in flight finishes on the providers it started
with, and the old generation's providers are closed when its last request leaves.
"""

from __future__ import annotations

import asyncio
import contextvars
import gc
import logging
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import msgspec

from .. import observability
from ..config import AnyProvider, Config, LocalProviderConfig
from ..console.state import ConsoleState
from ..dispatch import Dispatcher
from ..pool import ClientLimiter, Pools
from ..pricing import Pricing
from ..protocols.base import ModelInfo
from ..providers.base import Provider
from ..providers.http import HttpProvider
from ..routing import Route, Router
from ..secret import redact_in_logs
from ..store import AuditRow, Store
from ..store.ledger import LedgerWriter
from ..store.open import open_store
from ..telemetry import Observer, RequestRecord
from ..vkeys import load_pepper
from . import runtime_accounts
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


@dataclass(eq=False)
class Generation:
    """One config's worth of serving objects. `users`: requests pinned to it."""

    cfg: Config
    router: Router
    providers: dict[str, Provider]
    pools: Pools | None = None
    dispatcher: Dispatcher | None = None
    limiter: ClientLimiter | None = None
    users: int = 0
    retired: Callable[[], None] | None = None  # set when replaced: called once its last user leaves
    closing: set[asyncio.Task[None]] = field(default_factory=set)


class ReloadResult(msgspec.Struct, kw_only=True):
    providers_changed: list[str]  # added, removed or changed (their objects and pools are new)
    needs_restart: list[str]  # changed settings a running gateway cannot apply
    models: int


_pinned: contextvars.ContextVar[Generation | None] = contextvars.ContextVar(
    "smolgate_generation", default=None
)


class Runtime:
    def __init__(self, cfg: Config) -> None:
        self._gen = Generation(cfg, Router(cfg), {p.name: build_provider(p) for p in cfg.providers})
        self.observers: list[Observer] = []  # told of every finished request (ledger, metrics, access log)
        self.store: Store | None = None  # keys, ledger, accounts, audit (opened in start())
        self.pricing = Pricing(cfg)  # cost per request, for the ledger (and its count of unpriced models)
        self.ledger: LedgerWriter | None = None  # the usage ledger's write-behind buffer (cfg.ledger.enabled)
        self.vkeys: KeyService | None = None  # virtual keys (opened with the store)
        # USD of a finished request, for the ledger and key budgets alike
        self.cost_of: Callable[[RequestRecord], float] = lambda rec: self.pricing.cost_of(rec)
        self.drain = Drain()  # requests in flight, for graceful shutdown
        self.metrics: Metrics | None = None  # /metrics (observability.install, in start())
        self.tracer: Tracer | None = None  # only with observability.traces.endpoint
        self.config_path: str | None = None  # the file `reload` re-reads (None: reload is refused)
        self.on_reload: list[Callable[[Config], None]] = []  # e.g. the app's authenticator, rebuilt
        self.accounts = runtime_accounts.RuntimeAccounts(self)
        # the web console's sign-outs, recent requests and wire captures (console/); shared state: the pools'
        self.console = ConsoleState(
            cfg.console, lambda: self._gen.pools.shared if self._gen.pools else None, self.cost
        )
        self.observers.append(self.console.recent)
        self.reload_lock = asyncio.Lock()
        self.reload_on_sighup = False  # `smolgate serve --config` (the main thread's loop) sets it
        self._sighup: set[asyncio.Task[None]] = set()
        self._started = False

    # The current generation's parts; within a request, the generation it was pinned to.
    @property
    def gen(self) -> Generation:
        return _pinned.get() or self._gen

    @property
    def current(self) -> Generation:
        """The generation new requests get (whatever the caller's own request is pinned to)."""
        return self._gen

    @property
    def cfg(self) -> Config:
        return self.gen.cfg

    @property
    def router(self) -> Router:
        return self.gen.router

    @property
    def providers(self) -> dict[str, Provider]:
        return self.gen.providers

    @property
    def pools(self) -> Pools | None:
        return self.gen.pools

    @property
    def limiter(self) -> ClientLimiter | None:
        return self.gen.limiter

    @property
    def dispatcher(self) -> Dispatcher:
        d = self.gen.dispatcher
        assert d is not None, "Runtime.start() was not awaited"
        return d

    def enter(self) -> contextvars.Token[Generation | None]:
        """Pin the calling request (its task) to the current generation until `leave`."""
        g = self._gen
        g.users += 1
        return _pinned.set(g)

    def leave(self, token: contextvars.Token[Generation | None]) -> None:
        g = _pinned.get()
        _pinned.reset(token)
        if g is not None:
            g.users -= 1
            if g.users == 0 and g.retired is not None:
                retired, g.retired = g.retired, None
                retired()

    async def start(self) -> None:
        if self._started:
            return
        self._started = True
        g = self._gen
        if self.store is None:
            self.store = await open_store(g.cfg)
            # the price table's import takes a while: off the loop, before the first request needs it
            asyncio.get_running_loop().run_in_executor(None, self.pricing.warm)
        if g.cfg.ledger.enabled and self.ledger is None:
            self.ledger = LedgerWriter(self.store, g.cfg.ledger, self.cost)
            self.ledger.start()
            self.observers.append(self.ledger)
        g.pools = await Pools.create(g.cfg.providers, g.cfg.state.reveal() if g.cfg.state else None)
        await self.accounts.load(g)
        await start_generation(g, list(g.providers.values()))
        observability.install(self)
        await self.start_keys(self.store)
        # Everything allocated at start-up lives for the whole process: keep it out of the GC's scans, so
        # collections during traffic stay short (tail latency).
        gc.freeze()
        names = ", ".join(m.id for m in self.model_infos()) or "none"
        log.info(
            "smolgate ready: %d providers; models: %s; pool state: %s; store: %s",
            len(g.providers),
            names,
            g.cfg.state_display,
            self.store.url_display,
        )
        self.accounts.start_refresh()
        if self.reload_on_sighup:
            asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, self._on_sighup)

    def _on_sighup(self) -> None:
        task = asyncio.get_running_loop().create_task(self._reload_quietly())
        self._sighup.add(task)
        task.add_done_callback(self._sighup.discard)

    async def _reload_quietly(self) -> None:
        from ..config import ConfigError
        from .reload import ReloadError

        try:
            await self.reload("signal", "local")
        except (ConfigError, ReloadError):
            pass  # logged and audited by reload(); the old config keeps serving
        except Exception:
            log.exception("config reload failed; the old config keeps serving")

    async def reload(self, actor: str, source: str) -> ReloadResult:
        """Reload the config file (reload.py) and audit it; a refused file raises ConfigError / ReloadError,
        audited as refused, and changes nothing."""
        from ..config import ConfigError
        from .reload import ReloadError, reload

        try:
            result = await reload(self)
        except (ConfigError, ReloadError) as exc:
            log.error("config reload refused: %s", exc)
            await self.audit("config.reload", self.config_path, source, actor, ok=False, error=str(exc)[:300])
            raise
        changed = ",".join(result.providers_changed) or None
        await self.audit("config.reload", self.config_path, source, actor, ok=True, providers_changed=changed)
        return result

    async def start_keys(self, store: Store) -> None:
        """Virtual keys, checked against `store`, limited by the shared client limiter, budgets by cost.
        (They keep the first generation's limiter: its shared state outlives config reloads.)"""
        g = self._gen
        if g.limiter is None:
            g.limiter = ClientLimiter([], g.pools)
        budgets = Budgets(store, g.limiter.shared)
        if self.ledger is not None:
            self.ledger.on_written.append(budgets.written)
        self.vkeys = KeyService(store, lambda: load_pepper(self.cfg), g.limiter, budgets, self.cost)
        await self.vkeys.any_keys()
        self.observers.append(self.vkeys)

    async def swap(self, new: Generation, reused: set[str]) -> None:
        """Serve new requests from `new`; close the old generation's providers (except `reused`, shared with
        `new`) once its last pinned request has left."""
        redact_in_logs(new.cfg.secret_values())  # the new config's keys are masked in logs from now on
        self.pricing = Pricing(new.cfg)  # its providers' hosts and overrides may have changed
        asyncio.get_running_loop().run_in_executor(None, self.pricing.warm)
        old, self._gen = self._gen, new
        for cb in self.on_reload:
            cb(new.cfg)
        loop = asyncio.get_running_loop()

        def retire() -> None:
            task = loop.create_task(close_generation(old, reused, new))
            new.closing.add(task)  # a running task needs a reference
            task.add_done_callback(new.closing.discard)

        if old.users == 0:
            retire()
        else:
            old.retired = retire

    async def stop(self) -> None:
        if self.tracer is not None:  # export the queued spans (off the loop: it may wait on the network)
            await asyncio.to_thread(self.tracer.shutdown)
        await self.accounts.stop_refresh()
        g = self._gen
        await asyncio.gather(*g.closing, return_exceptions=True)
        for p in g.providers.values():
            await p.aclose()
        if g.dispatcher is not None:
            await g.dispatcher.signatures.store.close()
            await g.dispatcher.cache.close()
            await g.dispatcher.vision.close()
        if g.pools is not None:
            await g.pools.close()
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

    def cost(self, rec: RequestRecord) -> float:
        """A finished request's USD, priced once (`cost_of`) for the ledger, the budgets and the metrics."""
        if rec.cost_usd is None:
            rec.cost_usd = self.cost_of(rec)
        return rec.cost_usd

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
        g = self.gen
        infos = g.router.models()
        for p in g.providers.values():
            extra = getattr(p, "model_infos", None)
            if extra is not None:
                infos.extend(extra())
        return infos


async def start_generation(g: Generation, starting: list[Provider]) -> None:
    """Client limits, the dispatcher, and the providers in `starting` started (a local engine loads here)."""
    assert g.pools is not None
    if g.cfg.keys:  # client limits share the pools' state: one rpm window across replicas
        g.limiter = ClientLimiter(g.cfg.keys, g.pools)
    g.dispatcher = Dispatcher(g.cfg, g.router, g.providers, g.pools)
    for p in starting:
        start = getattr(p, "start", None)
        if start is not None:
            await start()
    for p in g.providers.values():
        for info in getattr(p, "model_infos", lambda: [])():
            name = info.id.split("/", 1)[-1]  # `base+adapter` keeps its adapter (a LoRA on the local model)
            g.router.add(name, [Route(p.name, name if "+" in name else "default")])


async def close_generation(old: Generation, reused: set[str], new: Generation) -> None:
    for name, p in old.providers.items():
        if name not in reused:
            try:
                await p.aclose()
            except Exception:  # one provider's failure to close must not keep the others open
                log.exception("closing provider %s after a reload", name)
    if old.dispatcher is not None:
        await old.dispatcher.vision.close()
    if old.dispatcher is not None and new.dispatcher is not None:
        if old.dispatcher.signatures.store is not new.dispatcher.signatures.store:
            await old.dispatcher.signatures.store.close()
        await old.dispatcher.cache.close()  # (each config has its own: a reload starts the cache afresh)
    log.info("config reload: the previous configuration's last request finished; its providers are closed")
