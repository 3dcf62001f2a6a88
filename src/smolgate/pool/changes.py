"""Run-time changes to a pool's accounts: accounts added through the admin API or CLI (server/runtime_accounts.py),
removed, enabled and disabled — without a restart. Each change makes a new `accounts` list (a loop over the old
one elsewhere stays valid) and wakes the queue (`_kick`): waiters may now have an account, or none at all."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence

import msgspec

from ..config import AccountConfig, ProviderBase
from ..secret import Secret, reveal
from . import health as H
from . import strategies
from .state_memory import AccountState
from .state_redis import SharedState


def key_fp(key: Secret | None) -> str:
    return hashlib.sha256((reveal(key) or "").encode()).hexdigest()[:12]


def account_state(c: AccountConfig, index: int, default_name: str) -> AccountState:
    name = c.name or default_name
    cfg = c if c.name else msgspec.structs.replace(c, name=name)
    return AccountState(cfg=cfg, name=name, index=index, key_fp=key_fp(c.api_key))


class RunTimeChanges:
    """Mixed into AccountPool (accounts.py), whose attributes these are."""

    name: str
    provider: ProviderBase
    accounts: list[AccountState]
    shared: SharedState | None
    _pick: Callable[[Sequence[AccountState], float], AccountState]

    def prefix(self, a: AccountState) -> str:
        return f"smolgate:pool:{self.name}:{a.name}"

    def _kick(self) -> None:
        raise NotImplementedError

    def find(self, name: str) -> AccountState | None:
        return next((a for a in self.accounts if a.name == name), None)

    def add(self, cfg: AccountConfig) -> AccountState:
        """Add an account (its name must be new in this pool); it takes traffic from the next pick on."""
        if self.accounts and self.accounts[0].name == f"{self.name}#anon":
            self.accounts = []  # the keyless placeholder gives way to real accounts
        name = cfg.name or f"{self.name}#{len(self.accounts)}"
        if self.find(name) is not None:
            raise ValueError(f"provider '{self.name}' already has an account named '{name}'")
        a = account_state(cfg, max((x.index for x in self.accounts), default=-1) + 1, name)
        self.accounts = [*self.accounts, a]  # a new list: a loop over the old one elsewhere stays valid
        self._pick = strategies.make(self.provider.strategy, a.index + 1)
        self._kick()
        return a

    def remove(self, name: str) -> bool:
        """Remove an account. Attempts holding it finish; no new attempt picks it."""
        a = self.find(name)
        if a is None:
            return False
        self.accounts = [x for x in self.accounts if x is not a]
        if not self.accounts and not self.provider.accounts:  # back to keyless, as configured
            self.accounts = [account_state(AccountConfig(name=f"{self.name}#anon"), a.index + 1, "")]
        self._kick()  # waiters with nothing usable left fail now instead of at their timeout
        return True

    def set_enabled(self, name: str, enabled: bool) -> bool:
        """Enable or disable an account now (not persisted for config accounts: the config file decides at
        the next start). Enabling also lifts a disable the pool applied after the upstream rejected the
        key: the operator says it is fixed, and a rejection would disable it again."""
        a = self.find(name)
        if a is None:
            return False
        a.cfg = msgspec.structs.replace(a.cfg, enabled=enabled)
        if enabled and a.health.state == H.DISABLED:
            a.health = H.Health()
            if self.shared is not None:
                self.shared.spawn(self.shared.forget(self.prefix(a)))
        self._kick()
        return True
