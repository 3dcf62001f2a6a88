"""Config reload without a restart (SIGHUP to `smolgate serve`, `POST /admin/reload`).

The file is read and validated first: a bad file is refused with its config error and nothing changes. Then a
new `Generation` is built: a provider whose config did not change keeps its object, its account pool and that
pool's health (a local engine is not loaded again); a changed or new provider gets new ones. New requests go to
the new generation at once; requests in flight (streams) finish on the old one, whose own providers are closed
when the last of them ends (runtime.py). Stored accounts are applied to the new pools.

Not reloaded (they need a restart, and a reload that changes them says so in its result): `state` (the Redis
URL), `store`, `data_dir`, `ledger`, `observability`, `shutdown_grace`, the listener's `server` limits. Client keys, the admin key, allowed hosts and CORS
origins are reloaded.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

import msgspec

from ..config import Config, ConfigError, LocalProviderConfig, load_config
from ..pool import AccountPool, PoolOptions, Pools
from ..providers.base import Provider
from ..routing import Router
from .runtime import Generation, ReloadResult, build_provider, start_generation

if TYPE_CHECKING:
    from .runtime import Runtime

log = logging.getLogger("smolgate")

# read once at start by what they configure (the shared-state connection, the store, the ledger writer, …)
_RESTART_ONLY = ("state", "store", "data_dir", "ledger", "observability", "shutdown_grace")
# server fields the running listener keeps (uvicorn's protocol and its limits are built once)
_RELOADED_SERVER = {
    "admin_key",
    "allowed_hosts",
    "cors_origins",
    "max_body_bytes",
    "auth_failures",
    "auth_backoff",
}


class ReloadError(Exception):
    """A reload that cannot run (no config file). A bad file is a ConfigError."""


def _same_engine(old: LocalProviderConfig, new: LocalProviderConfig) -> LocalProviderConfig:
    """The new local provider with the old one's resolved model path when it names the same model (serve
    resolves the default model once at start)."""
    if new.model is None or new.model == old.model:
        return msgspec.structs.replace(new, model=old.model)
    return new


async def reload(rt: Runtime) -> ReloadResult:
    """Re-read `rt.config_path` and swap the new configuration in; what changed. Raises ConfigError (the file
    is refused; the old configuration keeps serving) or ReloadError."""
    if rt.config_path is None:
        raise ReloadError("this gateway was started without --config: there is no file to reload")
    async with rt.reload_lock:  # one reload at a time
        cfg = await asyncio.to_thread(load_config, rt.config_path)
        old = rt.current  # not the generation this (admin) request is pinned to: a reload may have run since
        assert old.pools is not None
        olds = {p.name: p for p in old.cfg.providers}
        for i, p in enumerate(cfg.providers):
            prev = olds.get(p.name)
            if isinstance(p, LocalProviderConfig) and isinstance(prev, LocalProviderConfig):
                cfg.providers[i] = _same_engine(prev, p)
        reused = {p.name for p in cfg.providers if olds.get(p.name) == p}
        providers: dict[str, Provider] = {}
        fresh: list[Provider] = []
        for p in cfg.providers:
            if p.name in reused:
                providers[p.name] = old.providers[p.name]
            else:
                try:
                    providers[p.name] = build_provider(p)
                except ConfigError:
                    await _close(fresh)
                    raise
                fresh.append(providers[p.name])
        opts = next((pool.opts for pool in old.pools), PoolOptions())
        shared = old.pools.shared
        pools = Pools(
            {
                p.name: old.pools.get(p.name) if p.name in reused else AccountPool(p, opts, shared)
                for p in cfg.providers
            },
            shared,
        )
        new = Generation(cfg, Router(cfg), providers, pools)
        try:
            await rt.accounts.load(new)
            await start_generation(new, fresh)  # a local engine that fails to load refuses the reload
        except BaseException:
            await _close(fresh)
            raise
        if old.dispatcher is not None and new.dispatcher is not None and _same_signatures(old.cfg, cfg):
            new.dispatcher.signatures.store = old.dispatcher.signatures.store  # keep replayable state
        await rt.swap(new, reused)
        restart = [f for f in _RESTART_ONLY if getattr(old.cfg, f) != getattr(cfg, f)]
        restart += [
            f"server.{f}"
            for f in cfg.server.__struct_fields__
            if f not in _RELOADED_SERVER and getattr(old.cfg.server, f) != getattr(cfg.server, f)
        ]
        changed = sorted({*olds, *(p.name for p in cfg.providers)} - reused)
        if restart:
            log.warning("config reload: %s changed but take effect only at restart", ", ".join(restart))
        log.info(
            "config reloaded from %s: %d providers (%s changed), %d model aliases",
            rt.config_path,
            len(cfg.providers),
            ", ".join(changed) or "none",
            len(cfg.models),
        )
        return ReloadResult(providers_changed=changed, needs_restart=restart, models=len(cfg.models))


def _same_signatures(a: Config, b: Config) -> bool:
    return a.state == b.state


async def _close(providers: list[Provider]) -> None:
    for p in providers:
        try:
            await p.aclose()
        except Exception:
            log.exception("closing a provider of a refused reload")
