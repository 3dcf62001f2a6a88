"""Provider accounts added at run time (admin API, `smolgate accounts add`): checked, encrypted, stored, and
turned back into pool accounts when a gateway starts or reloads.

The API key is encrypted under the master key (crypto.py) before it reaches the store, and decrypted only
into the `AccountConfig` the pool hands to the upstream call. Nothing here returns, logs or raises the key.
"""

from __future__ import annotations

import logging
import re
import secrets
import time
from dataclasses import dataclass

import msgspec

from .config import AccountConfig, Config, ProviderConfig
from .crypto import Keyring, MasterKeyError
from .secret import Secret
from .store import AccountRow, Store
from .store.base import Conflict

log = logging.getLogger("smolgate")

# Names go into Redis keys, log lines, the ledger and URLs (`/admin/accounts/{name}`): keep them tame.
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@+-]{0,63}")
MAX_KEY_CHARS = 8192


class AccountInputError(ValueError):
    """A request to add or change an account that cannot be honoured (the message names the field)."""


@dataclass(frozen=True, slots=True)
class Limits:
    rpm: int | None = None
    tpm: int | None = None
    max_concurrency: int | None = None
    weight: float = 1.0

    def check(self) -> Limits:
        for field in ("rpm", "tpm", "max_concurrency"):
            v = getattr(self, field)
            if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 1):
                raise AccountInputError(f"{field} must be a positive integer")
        w = self.weight
        if not isinstance(w, (int, float)) or isinstance(w, bool) or not 0 <= w <= 1e6:
            raise AccountInputError("weight must be a number from 0 to 1000000")
        return self


def check_name(name: object) -> str:
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise AccountInputError(
            "name must be 1-64 characters: letters, digits and . _ : @ + - (starting with a letter or digit)"
        )
    return name


def check_key(api_key: object) -> str:
    """An API key goes into an HTTP header: no control characters (CR/LF would inject a header)."""
    if not isinstance(api_key, str) or not api_key.strip():
        raise AccountInputError("api_key must be a non-empty string")
    key = api_key.strip()
    if len(key) > MAX_KEY_CHARS or any(ord(c) < 0x20 or ord(c) == 0x7F for c in key):
        raise AccountInputError(f"api_key must be printable text of at most {MAX_KEY_CHARS} characters")
    return key


def check_provider(cfg: Config, provider: object) -> str:
    """A configured remote provider (a local engine has no accounts to add)."""
    names = [p.name for p in cfg.providers if isinstance(p, ProviderConfig)]
    if not isinstance(provider, str) or provider not in names:
        raise AccountInputError(
            f"provider must be one of the configured remote providers: {', '.join(names) or 'none'}"
        )
    return provider


def taken(cfg: Config, rows: list[AccountRow], provider: str, name: str) -> bool:
    p = cfg.provider(provider)
    in_config = p is not None and any(a.name == name for a in p.accounts)
    return in_config or any(r.provider == provider and r.name == name for r in rows)


async def add(
    store: Store, keyring: Keyring, cfg: Config, provider: str, name: str, api_key: str, limits: Limits
) -> AccountRow:
    """Check, encrypt and store a new account; returns its row (which holds only the ciphertext)."""
    provider, name, key = check_provider(cfg, provider), check_name(name), check_key(api_key)
    limits.check()
    if taken(cfg, await store.accounts(), provider, name):
        raise AccountInputError(f"provider '{provider}' already has an account named '{name}'")
    account_id = "acct_" + secrets.token_hex(8)
    row = AccountRow(
        id=account_id,
        provider=provider,
        name=name,
        key_ciphertext=keyring.encrypt(key, account_id),
        created=time.time(),
        rpm=limits.rpm,
        tpm=limits.tpm,
        max_concurrency=limits.max_concurrency,
        weight=float(limits.weight),
    )
    try:
        await store.add_account(row)
    except Conflict:  # added by someone else a moment ago (the unique (provider, name) index)
        raise AccountInputError(f"provider '{provider}' already has an account named '{name}'") from None
    return row


async def find(store: Store, name: str, provider: str | None = None) -> list[AccountRow]:
    return [r for r in await store.accounts() if r.name == name and provider in (None, r.provider)]


def to_config(row: AccountRow, keyring: Keyring) -> AccountConfig:
    """The pool's view of a stored account, its key decrypted (MasterKeyError if it does not decrypt)."""
    return AccountConfig(
        api_key=Secret(keyring.decrypt(row.key_ciphertext, row.id)),
        name=row.name,
        max_concurrency=row.max_concurrency,
        rpm=row.rpm,
        tpm=row.tpm,
        weight=row.weight,
        enabled=row.enabled,
    )


class NewAccount(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """`POST /admin/accounts`: the API key is stored encrypted and never returned."""

    provider: str
    name: str
    api_key: str
    rpm: int | None = None
    tpm: int | None = None
    max_concurrency: int | None = None
    weight: float = 1.0


class PublicAccount(msgspec.Struct, kw_only=True):
    """What the admin API and the CLI show of a stored account: everything but the key."""

    id: str
    provider: str
    name: str
    created: float
    enabled: bool
    rpm: int | None
    tpm: int | None
    max_concurrency: int | None
    weight: float


def public(row: AccountRow) -> PublicAccount:
    return PublicAccount(
        id=row.id,
        provider=row.provider,
        name=row.name,
        created=row.created,
        enabled=row.enabled,
        rpm=row.rpm,
        tpm=row.tpm,
        max_concurrency=row.max_concurrency,
        weight=row.weight,
    )


def configs(rows: list[AccountRow], keyring: Keyring, cfg: Config) -> dict[str, list[AccountConfig]]:
    """Stored accounts by provider, decrypted; one that cannot be used (its provider is gone from the
    config, its name is taken by a config account, it does not decrypt) is skipped with a warning naming
    it, so one bad row never keeps the gateway from starting."""
    out: dict[str, list[AccountConfig]] = {}
    for r in rows:
        p = cfg.provider(r.provider)
        if not isinstance(p, ProviderConfig):
            log.warning("stored account %s: provider '%s' is not configured; skipped", r.name, r.provider)
            continue
        if any(a.name == r.name for a in p.accounts):
            log.warning("stored account %s of %s: a config account has that name; skipped", r.name, p.name)
            continue
        try:
            out.setdefault(r.provider, []).append(to_config(r, keyring))
        except MasterKeyError as exc:
            log.error("stored account %s of %s skipped: %s", r.name, r.provider, exc)
    return out
