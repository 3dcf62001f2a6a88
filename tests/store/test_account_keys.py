"""Stored account keys on both backends: encrypted rows round-trip, and a master-key rotation re-encrypts every
row in one transaction (cli_secrets.reencrypt) — afterwards only the new key decrypts them."""

from __future__ import annotations

import time

import msgspec
import pytest

from smolgate.cli_secrets import reencrypt
from smolgate.crypto import Keyring, MasterKey, MasterKeyError
from smolgate.store import AccountRow, Store


def row(key: MasterKey, account_id: str, secret: str) -> AccountRow:
    return AccountRow(
        id=account_id,
        provider="up",
        name=account_id.removeprefix("acct_"),
        key_ciphertext=key.encrypt(secret, account_id),
        created=time.time(),
    )


async def test_rotation_reencrypts_every_row_and_retires_the_old_key(store: Store) -> None:
    old, _ = MasterKey.generate()
    new, _ = MasterKey.generate()
    secrets = {"acct_a": "sk-a-0123456789", "acct_b": "sk-b-0123456789"}
    for account_id, secret in secrets.items():
        await store.add_account(row(old, account_id, secret))
    assert await reencrypt(store, Keyring(old), new) == 2
    for r in await store.accounts():
        assert new.decrypt(r.key_ciphertext, r.id) == secrets[r.id]
        with pytest.raises(MasterKeyError):
            old.decrypt(r.key_ciphertext, r.id)


async def test_a_row_the_key_cannot_decrypt_stops_the_rotation_before_any_write(store: Store) -> None:
    old, _ = MasterKey.generate()
    stranger, _ = MasterKey.generate()
    new, _ = MasterKey.generate()
    await store.add_account(row(old, "acct_a", "sk-a-0123456789"))
    await store.add_account(row(stranger, "acct_b", "sk-b-0123456789"))
    before = await store.accounts()
    with pytest.raises(MasterKeyError, match="encrypted with master key"):
        await reencrypt(store, Keyring(old), new)
    assert await store.accounts() == before


async def test_update_accounts_replaces_only_the_rows_given(store: Store) -> None:
    key, _ = MasterKey.generate()
    a, b = row(key, "acct_a", "sk-a-0123456789"), row(key, "acct_b", "sk-b-0123456789")
    await store.add_account(a)
    await store.add_account(b)
    await store.update_accounts([msgspec.structs.replace(a, enabled=False, rpm=7)])
    got = {r.id: r for r in await store.accounts()}
    assert got["acct_a"].enabled is False and got["acct_a"].rpm == 7
    assert got["acct_b"] == b
