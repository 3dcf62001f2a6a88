"""Virtual client keys: their secrets, how they are stored (a keyed hash), and the fields an operator sets.

A secret is `sg-` + 32 random bytes (urlsafe base64, 256 bits). Only `HMAC-SHA256(pepper, secret)` is stored,
with the secret's first characters (`prefix`) to tell keys apart in listings. Why HMAC and not argon2: the
check runs on every request and must cost microseconds; argon2's deliberate slowness protects *low-entropy*
secrets (passwords) against offline guessing, and a 256-bit random secret cannot be guessed however fast the
hash is. The pepper (a server secret outside the database) means a leaked database alone cannot even be used
to test candidate keys.

The pepper comes from `$SMOLGATE_KEY_PEPPER`, else the file `key_pepper` in the data dir, created on first use
(0600). Every replica and every CLI run must use the same pepper, or keys created by one are unknown to another.
"""

from __future__ import annotations

import calendar
import contextlib
import hashlib
import hmac
import os
import re
import secrets
import time
from pathlib import Path
from typing import Any

import msgspec

from . import timespec
from .config import Config
from .crypto import MasterKeyError, read_private_file, write_key_file
from .store.records import KeyRow, Period

SECRET_PREFIX = "sg-"
PREFIX_CHARS = 12  # "sg-" + 9 characters: enough to tell keys apart, far too few to matter for guessing
PEPPER_ENV = "SMOLGATE_KEY_PEPPER"
PEPPER_FILE = "key_pepper"
PERIODS: tuple[Period, ...] = ("day", "month", "total")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@+\- ]{0,63}")


class InvalidKeyField(ValueError):
    """An invalid key field (the message names it; shown to the operator as is)."""


def is_virtual(secret: str) -> bool:
    return secret.startswith(SECRET_PREFIX)


def new_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def hash_secret(pepper: bytes, secret: str) -> str:
    return hmac.new(pepper, secret.encode(), hashlib.sha256).hexdigest()


def load_pepper(cfg: Config) -> bytes:
    """The server pepper: `$SMOLGATE_KEY_PEPPER`, else `key_pepper` in the data dir (created once, 0600)."""
    env = os.environ.get(PEPPER_ENV)
    if env:
        if len(env) < 16:
            raise ValueError(f"${PEPPER_ENV} is too short (use at least 16 random characters)")
        return env.encode()
    path = cfg.data_path / PEPPER_FILE
    with contextlib.suppress(FileNotFoundError):
        return _read_pepper(path)
    # Without replace, link() fails if another process won the race: every process reads the one pepper
    # that was written in full.
    with contextlib.suppress(FileExistsError):
        write_key_file(path, secrets.token_hex(32), replace=False)
    return _read_pepper(path)


def _read_pepper(path: Path) -> bytes:
    try:
        value = read_private_file(path, "key pepper").strip()
    except MasterKeyError as exc:
        raise ValueError(str(exc)) from None
    if len(value) < 16:
        raise ValueError(f"the key pepper file {path} is empty or too short")
    return value.encode()


def new_key(
    pepper: bytes,
    name: str,
    *,
    models: list[str] | None = None,
    rpm: int | None = None,
    tpm: int | None = None,
    max_concurrency: int | None = None,
    budget_usd: float | None = None,
    period: str = "total",
    expires: float | None = None,
    privacy: str | None = None,
) -> tuple[KeyRow, str]:
    """A new key's row and its secret (the only time the secret exists outside the client)."""
    _check_name(name)
    for field, value in (("rpm", rpm), ("tpm", tpm), ("max_concurrency", max_concurrency)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise InvalidKeyField(f"{field} must be a positive integer")
    if budget_usd is not None and (
        isinstance(budget_usd, bool) or not isinstance(budget_usd, int | float) or not budget_usd >= 0
    ):
        raise InvalidKeyField("budget_usd must be a number >= 0")
    if period not in PERIODS:
        raise InvalidKeyField(f"period must be one of {', '.join(PERIODS)}")
    if models is not None:
        if not isinstance(models, list) or not all(isinstance(m, str) and m.strip() for m in models):
            raise InvalidKeyField("models must be a list of model names")
        models = [m.strip() for m in models]
    if privacy not in (None, "standard", "redact", "local"):
        raise InvalidKeyField("privacy must be one of standard, redact, local")
    now = time.time()
    if expires is not None and expires <= now:
        raise InvalidKeyField("expires must be in the future")
    secret = new_secret()
    row = KeyRow(
        id="vk_" + secrets.token_hex(8),
        name=name,
        prefix=secret[:PREFIX_CHARS],
        hash=hash_secret(pepper, secret),
        created=now,
        models=models,
        rpm=rpm,
        tpm=tpm,
        max_concurrency=max_concurrency,
        budget_usd=float(budget_usd) if budget_usd is not None else None,
        period=period,  # checked against PERIODS above
        expires=expires,
        privacy=privacy,
    )
    return row, secret


def rotated(pepper: bytes, row: KeyRow) -> tuple[KeyRow, str]:
    """The same key (id, limits, spend) with a new secret; the old secret stops matching."""
    secret = new_secret()
    return msgspec.structs.replace(
        row, prefix=secret[:PREFIX_CHARS], hash=hash_secret(pepper, secret)
    ), secret


def _check_name(name: object) -> None:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise InvalidKeyField(
            "name must be 1-64 characters: letters, digits, space and . _ : @ + - (starting with a letter or digit)"
        )
    if name.startswith("vk_"):
        raise InvalidKeyField("name must not start with 'vk_' (key ids do)")


def parse_duration(text: str) -> float:
    """Seconds in "30d", "12h", "90m", "1w", "45s" (or a sum: "1d12h")."""
    try:
        return timespec.parse_duration(text)
    except ValueError as exc:
        raise InvalidKeyField(str(exc)) from None


def period_bounds(period: Period, now: float) -> tuple[float, float | None]:
    """The current budget period's start and end (Unix seconds, UTC); `total` has no end."""
    if period == "total":
        return 0.0, None
    t = time.gmtime(now)
    if period == "day":
        start = calendar.timegm((t.tm_year, t.tm_mon, t.tm_mday, 0, 0, 0))
        return float(start), float(start + 86400)
    start = calendar.timegm((t.tm_year, t.tm_mon, 1, 0, 0, 0))
    year, month = (t.tm_year + 1, 1) if t.tm_mon == 12 else (t.tm_year, t.tm_mon + 1)
    return float(start), float(calendar.timegm((year, month, 1, 0, 0, 0)))


def period_tag(period: Period, now: float) -> str:
    """A name for the current period (Redis keys): "d20261207", "m202612", "total"."""
    if period == "total":
        return "total"
    return time.strftime("d%Y%m%d" if period == "day" else "m%Y%m", time.gmtime(now))


def status(row: KeyRow, now: float) -> str:
    if row.revoked is not None:
        return "revoked"
    if row.expires is not None and row.expires <= now:
        return "expired"
    return "active"


def public(row: KeyRow, spend: float | None = None) -> dict[str, Any]:
    """What the admin API and the CLI show of a key: everything but its hash."""
    out: dict[str, Any] = {
        "id": row.id,
        "name": row.name,
        "prefix": row.prefix,
        "created": row.created,
        "models": row.models,
        "rpm": row.rpm,
        "tpm": row.tpm,
        "max_concurrency": row.max_concurrency,
        "budget_usd": row.budget_usd,
        "period": row.period,
        "expires": row.expires,
        "revoked": row.revoked,
        "privacy": row.privacy,
        "status": status(row, time.time()),
    }
    if spend is not None:
        out["spend_usd"] = round(spend, 6)
    return out
