"""The rows the store keeps. Typed structs past the store boundary; no secrets in any of them except
`AccountRow.key_ciphertext` (encrypted, see crypto.py) and `KeyRow.hash` (an HMAC, not the key)."""

from __future__ import annotations

from typing import Literal

import msgspec

Period = Literal["day", "month", "total"]
GroupBy = Literal["key", "model", "alias", "account", "provider", "status"]


class UsageRow(msgspec.Struct, kw_only=True, frozen=True, gc=False):
    """One finished client request (one ledger row). Times are Unix seconds (UTC)."""

    ts: float  # when the request arrived
    request_id: str
    key_id: str | None  # a virtual key's id, "config:<name>" for a config-file key, None when open
    client_protocol: str  # "openai", "anthropic", "gemini", "ollama", "openai-responses"
    alias: str | None  # the model name the client asked for
    provider: str | None  # the provider that answered (or was last tried)
    account: str | None  # that provider account's *name* (never its key)
    upstream_model: str | None
    upstream_protocol: str | None  # "openai", "anthropic", "gemini", "ollama", "local"
    input_tokens: int = 0  # includes cached-read and cache-write tokens
    cached_tokens: int = 0
    cache_write_tokens: int = 0
    output_tokens: int = 0  # includes reasoning tokens
    reasoning_tokens: int = 0
    cost_usd: float = 0.0
    latency_ms: float = 0.0
    ttft_ms: float | None = None  # streams (and non-streams: the time to the whole answer is latency)
    status: int = 200
    error_kind: str | None = None  # ErrorKind value when status >= 400
    stream: bool = False
    local: bool = False
    attempts: int = 1
    served_by: str | None = None  # "cache" (cost 0) or "offline" (the local fallback); None: the route
    privacy: str | None = None  # JSON: the policy and the values it replaced per kind (never the values)
    vision_images: int | None = None  # images the vision bridge turned into text (None: it did not run)


class UsageBucket(msgspec.Struct, kw_only=True, frozen=True):
    """An aggregate over rollups: one group (by key / model / …) or one time bucket."""

    group: str | None  # the group's value (key id, alias, account name…); None for "all"
    bucket: float | None = None  # the bucket's start (Unix seconds) for time series; None for totals
    requests: int = 0
    errors: int = 0
    input_tokens: int = 0
    cached_tokens: int = 0
    cache_write_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0
    cost_usd: float = 0.0
    latency_ms_sum: float = 0.0
    ttft_ms_sum: float = 0.0
    ttft_count: int = 0


class KeyRow(msgspec.Struct, kw_only=True, frozen=True):
    """A virtual client key. The secret itself is never stored: `hash` is HMAC-SHA256(pepper, secret)."""

    id: str  # "vk_" + random; what the ledger, logs and the admin API name
    name: str
    prefix: str  # the first characters of the secret, shown to identify it ("sg-abcd1234")
    hash: str  # hex
    created: float
    models: list[str] | None = None  # allowed aliases; None: all
    rpm: int | None = None
    tpm: int | None = None
    max_concurrency: int | None = None
    budget_usd: float | None = None
    period: Period = "total"
    expires: float | None = None
    revoked: float | None = None
    privacy: str | None = None  # the loosest privacy policy its requests may have; None: standard


class AccountRow(msgspec.Struct, kw_only=True, frozen=True):
    """A provider account added at run time (admin API / `smolgate accounts add`)."""

    id: str
    provider: str  # a configured provider's name
    name: str
    key_ciphertext: bytes  # the API key, encrypted under the master key (crypto.py)
    created: float
    enabled: bool = True
    rpm: int | None = None
    tpm: int | None = None
    max_concurrency: int | None = None
    weight: float = 1.0


class AuditRow(msgspec.Struct, kw_only=True, frozen=True):
    """One change made through the admin API or CLI: who, what, when, from where. Never a secret."""

    ts: float
    actor: str  # "admin-api", "cli", …
    action: str  # "key.create", "key.revoke", "account.add", "config.reload", …
    target: str | None = None  # the id or name acted on
    source: str | None = None  # client address, or "local" for the CLI
    detail: dict[str, str | int | float | bool | None] = msgspec.field(default_factory=dict)
