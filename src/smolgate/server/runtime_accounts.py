"""Stored provider accounts in the running gateway: loaded into the pools at start, kept in step with the
store, changed at run time by the admin API.

The store is the truth for accounts added at run time. Each replica applies it at start, at a config reload,
at once after a change made through its own admin API, and every `REFRESH` seconds (so an account added by
`smolgate accounts add` or through another replica's admin API is picked up without a restart). Enabling or
disabling a *config* account is run-time state of this replica only: the config file decides at the next start.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING

from ..config import AccountConfig
from ..crypto import Keyring, MasterKeyError, load_keyring
from ..pool import AccountPool
from ..providers.http import HttpProvider
from ..secret import redact_in_logs
from ..store import AccountRow
from ..stored_accounts import to_config

if TYPE_CHECKING:
    from .runtime import Generation, Runtime

log = logging.getLogger("smolgate")

REFRESH = 10.0  # seconds between looks at the store for accounts changed elsewhere


class RuntimeAccounts:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.loaded: dict[tuple[str, str], str] = {}  # (provider, name) → the stored row's id now in the pool
        self._task: asyncio.Task[None] | None = None
        self._unusable: set[str] = set()  # row ids already reported as unusable (one log line each)

    def keyring(self, create: bool = False) -> Keyring:
        """Read on each use: after `smolgate secrets rotate-master` the new key file is used at once."""
        return load_keyring(self.rt.cfg.data_path, create=create)

    async def load(self, g: Generation) -> None:
        if self.rt.store is not None:
            self.sync(g, await self.rt.store.accounts())

    def sync(self, g: Generation, rows: list[AccountRow]) -> None:
        """Make `g`'s pools hold exactly the stored accounts in `rows` (config accounts are left alone)."""
        if g.pools is None:
            return
        wanted = {(r.provider, r.name): r for r in rows if r.provider in g.providers}
        for (provider, name), row_id in list(self.loaded.items()):
            row = wanted.get((provider, name))
            if row is None or row.id != row_id:
                if provider in g.providers:
                    g.pools.get(provider).remove(name)
                del self.loaded[(provider, name)]
        keyring: Keyring | None = None
        for (provider, name), row in wanted.items():
            pool = g.pools.get(provider)
            a = pool.find(name)
            if a is not None and (provider, name) in self.loaded:
                if a.cfg.enabled != row.enabled:
                    pool.set_enabled(name, row.enabled)
                continue
            if a is not None:  # a config account has this name
                self._report(row, "a config account of the provider has the same name")
                continue
            try:
                keyring = keyring or self.keyring()
                acct = to_config(row, keyring)
            except MasterKeyError as exc:
                self._report(row, str(exc))
                continue
            self.add(g, pool, acct)
            self.loaded[(provider, name)] = row.id

    def add(self, g: Generation, pool: AccountPool, acct: AccountConfig) -> None:
        key = acct.api_key.reveal() if acct.api_key else ""
        provider = g.providers.get(pool.name)
        if isinstance(provider, HttpProvider):  # mask the key in upstream error text shown to clients
            provider.scrub.learn(key)
        redact_in_logs([key])
        pool.add(acct)

    def _report(self, row: AccountRow, why: str) -> None:
        if row.id not in self._unusable:
            self._unusable.add(row.id)
            log.error("stored account %s of %s is not used: %s", row.name, row.provider, why)

    async def refresh(self) -> None:
        if self.rt.store is not None:
            self.sync(self.rt.current, await self.rt.store.accounts())

    async def _tick(self) -> None:
        await self.refresh()
        pools = self.rt.current.pools
        if pools is not None:  # with Redis: adopt what other replicas did (e.g. an operator's re-enable)
            await pools.refresh()

    def start_refresh(self) -> None:
        if self.rt.store is not None and self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._refresh_loop())

    async def stop_refresh(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _refresh_loop(self) -> None:
        failing = False
        while True:
            await asyncio.sleep(REFRESH)
            try:
                await self._tick()
                failing = False
            except Exception as exc:  # the store is away: keep serving what we have, say so once
                if not failing:
                    log.warning(
                        "cannot read stored accounts (%s); keeping the ones loaded", type(exc).__name__
                    )
                failing = True
