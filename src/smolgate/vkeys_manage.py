"""Managing virtual keys — create, find, revoke, rotate — for the admin API and the CLI alike.

Input arrives as JSON-ish values (the admin API's body, the CLI's options) and is validated here once, with
messages that name the field. Every change is written to the audit log through the caller's `audit` (actor
"admin-api" with the client's address, or "cli"), never with a secret in it.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec

from .store import KeyRow, Store
from .vkeys import InvalidKeyField, new_key, parse_duration, period_bounds, rotated

Audit = Callable[..., Awaitable[None]]  # audit(action, target, **detail)
FIELDS = ("name", "models", "rpm", "tpm", "max_concurrency", "budget_usd", "period", "expires", "privacy")


def expiry(value: object, now: float) -> float | None:
    """`expires` as given: a duration ("30d", from now), a Unix time, or null."""
    if value is None:
        return None
    if isinstance(value, str):
        return now + parse_duration(value)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    raise InvalidKeyField("expires must be a duration like 30d, or a Unix time")


def models_of(value: object) -> list[str] | None:
    """`models` as given: a list of names, a comma-separated string, or null (any model)."""
    if value is None:
        return None
    if isinstance(value, str):
        value = [m for m in value.split(",") if m.strip()]
    if not isinstance(value, list) or not value:
        raise InvalidKeyField("models must be a non-empty list of model names (or null for any)")
    return value


async def create(store: Store, pepper: bytes, fields: dict[str, Any], audit: Audit) -> tuple[KeyRow, str]:
    unknown = sorted(set(fields) - set(FIELDS))
    if unknown:
        raise InvalidKeyField(f"unknown field '{unknown[0][:40]}' (known: {', '.join(FIELDS)})")
    if "name" not in fields:
        raise InvalidKeyField("name is required")
    if fields.get("budget_usd") is None and fields.get("period") not in (None, "total"):
        raise InvalidKeyField("period needs budget_usd")
    row, secret = new_key(
        pepper,
        fields["name"],
        models=models_of(fields.get("models")),
        rpm=fields.get("rpm"),
        tpm=fields.get("tpm"),
        max_concurrency=fields.get("max_concurrency"),
        budget_usd=fields.get("budget_usd"),
        period=fields.get("period") or "total",
        expires=expiry(fields.get("expires"), time.time()),
        privacy=fields.get("privacy"),
    )
    if any(k.name == row.name for k in await store.keys()):
        raise InvalidKeyField(f"an active key named '{row.name}' exists already")
    await store.add_key(row)
    await audit("key.create", row.id, name=row.name, prefix=row.prefix)
    return row, secret


async def find(store: Store, id_or_name: str) -> KeyRow | None:
    """A key by id, else by name (several revoked keys may share a name: the active one, else the newest)."""
    if id_or_name.startswith("vk_"):
        return await store.key(id_or_name)
    named = [k for k in await store.keys(include_revoked=True) if k.name == id_or_name]
    named.sort(key=lambda k: (k.revoked is None, k.created))
    return named[-1] if named else None


async def revoke(store: Store, row: KeyRow, audit: Audit) -> KeyRow:
    """Revoked from now (idempotent: an already revoked key is returned as is)."""
    if row.revoked is not None:
        return row
    row = msgspec.structs.replace(row, revoked=time.time())
    await store.update_key(row)
    await audit("key.revoke", row.id, name=row.name, prefix=row.prefix)
    return row


async def rotate(store: Store, pepper: bytes, row: KeyRow, audit: Audit) -> tuple[KeyRow, str]:
    if row.revoked is not None:
        raise InvalidKeyField(f"key {row.id} is revoked; create a new one")
    new, secret = rotated(pepper, row)
    await store.update_key(new)
    await audit("key.rotate", row.id, name=row.name, old_prefix=row.prefix, prefix=new.prefix)
    return new, secret


async def spend(store: Store, row: KeyRow) -> float:
    """What the key spent in its current budget period, per the ledger."""
    start, _ = period_bounds(row.period, time.time())
    return await store.key_spend(row.id, start)
