"""The store's tables, as versioned migrations shared by both backends.

Each migration is a list of statements written once, with `{real}`, `{big}`, `{blob}` and `{serial}` standing for
the column types that differ between SQLite and PostgreSQL. A backend applies the migrations it has not applied
yet, in order, in one transaction, holding a lock that makes two replicas starting at once take turns (SQLite:
`BEGIN IMMEDIATE`; PostgreSQL: a transaction-scoped advisory lock), and records each in `schema_version`.

Rollups (`usage_minute`, `usage_hour`, `usage_day`) hold one row per bucket × key × alias × provider × account × upstream
model × status class. Missing dimensions are stored as '' (a NULL would defeat the unique index that the upserts
conflict on) and read back as None.
"""

from __future__ import annotations

from typing import Literal

Dialect = Literal["sqlite", "postgres"]

_TYPES: dict[Dialect, dict[str, str]] = {
    "sqlite": {"real": "REAL", "big": "INTEGER", "blob": "BLOB", "serial": "INTEGER PRIMARY KEY"},
    "postgres": {
        "real": "DOUBLE PRECISION",
        "big": "BIGINT",
        "blob": "BYTEA",
        "serial": "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY",
    },
}

ROLLUP_DIMS = ("key_id", "alias", "provider", "account", "upstream_model", "status_class")
ROLLUP_SUMS = (
    "requests",
    "errors",
    "input_tokens",
    "cached_tokens",
    "cache_write_tokens",
    "output_tokens",
    "reasoning_tokens",
    "cost_usd",
    "latency_ms_sum",
    "ttft_ms_sum",
    "ttft_count",
)
ROLLUP_TABLES = {60: "usage_minute", 3600: "usage_hour", 86400: "usage_day"}  # bucket seconds → table


def _rollup(table: str) -> list[str]:
    return [
        f"""CREATE TABLE {table} (
            bucket {{big}} NOT NULL, key_id TEXT NOT NULL, alias TEXT NOT NULL, provider TEXT NOT NULL,
            account TEXT NOT NULL, upstream_model TEXT NOT NULL, status_class {{big}} NOT NULL,
            requests {{big}} NOT NULL, errors {{big}} NOT NULL, input_tokens {{big}} NOT NULL,
            cached_tokens {{big}} NOT NULL, cache_write_tokens {{big}} NOT NULL, output_tokens {{big}} NOT NULL,
            reasoning_tokens {{big}} NOT NULL, cost_usd {{real}} NOT NULL, latency_ms_sum {{real}} NOT NULL,
            ttft_ms_sum {{real}} NOT NULL, ttft_count {{big}} NOT NULL)""",
        f"CREATE UNIQUE INDEX {table}_dims ON {table} (bucket, {', '.join(ROLLUP_DIMS)})",
        f"CREATE INDEX {table}_key ON {table} (key_id, bucket)",  # key_spend, per-key series
    ]


# Never edit a migration that has shipped: append a new one.
MIGRATIONS: list[list[str]] = [
    [  # 1: ledger, rollups, keys, accounts, audit
        """CREATE TABLE usage (
            id {serial}, ts {real} NOT NULL, request_id TEXT NOT NULL, key_id TEXT,
            client_protocol TEXT NOT NULL, alias TEXT, provider TEXT, account TEXT, upstream_model TEXT,
            upstream_protocol TEXT, input_tokens {big} NOT NULL, cached_tokens {big} NOT NULL,
            cache_write_tokens {big} NOT NULL, output_tokens {big} NOT NULL, reasoning_tokens {big} NOT NULL,
            cost_usd {real} NOT NULL, latency_ms {real} NOT NULL, ttft_ms {real}, status {big} NOT NULL,
            error_kind TEXT, stream {big} NOT NULL, local {big} NOT NULL, attempts {big} NOT NULL)""",
        "CREATE INDEX usage_ts ON usage (ts)",  # recent rows, retention
        "CREATE INDEX usage_key_ts ON usage (key_id, ts)",  # a key's recent rows
        "CREATE INDEX usage_request ON usage (request_id)",  # look one request up
        *_rollup("usage_minute"),
        *_rollup("usage_hour"),
        """CREATE TABLE keys (
            id TEXT PRIMARY KEY, name TEXT NOT NULL, prefix TEXT NOT NULL, hash TEXT NOT NULL UNIQUE,
            created {real} NOT NULL, models TEXT, rpm {big}, tpm {big}, max_concurrency {big},
            budget_usd {real}, period TEXT NOT NULL, expires {real}, revoked {real})""",
        "CREATE INDEX keys_name ON keys (name)",
        """CREATE TABLE accounts (
            id TEXT PRIMARY KEY, provider TEXT NOT NULL, name TEXT NOT NULL, key_ciphertext {blob} NOT NULL,
            created {real} NOT NULL, enabled {big} NOT NULL, rpm {big}, tpm {big}, max_concurrency {big},
            weight {real} NOT NULL, UNIQUE (provider, name))""",
        """CREATE TABLE audit (
            id {serial}, ts {real} NOT NULL, actor TEXT NOT NULL, action TEXT NOT NULL, target TEXT,
            source TEXT, detail TEXT NOT NULL)""",
        "CREATE INDEX audit_ts ON audit (ts)",
    ],
    # 2: per-day rollups (UTC days), so month-long dashboards read ~30 groups per combination, not ~720
    _rollup("usage_day"),
    # 3: no index on request_id: nothing queries by it, and its random keys made every ledger insert touch a
    # random page of a large index (a request is found by time, through usage_ts)
    ["DROP INDEX IF EXISTS usage_request"],
    # 4: who answered when no upstream did: 'cache' or 'offline' (NULL otherwise: no cost for most rows)
    ["ALTER TABLE usage ADD COLUMN served_by TEXT"],
    # 5: privacy policies (policies/privacy.py): what a request's policy did; a virtual key's policy
    ["ALTER TABLE usage ADD COLUMN privacy TEXT", "ALTER TABLE keys ADD COLUMN privacy TEXT"],
    # 6: how many images the vision bridge turned into text for the answer (NULL: it did not run)
    ["ALTER TABLE usage ADD COLUMN vision_images {big}"],
]

SCHEMA_VERSION = (
    "CREATE TABLE IF NOT EXISTS schema_version (version {big} PRIMARY KEY, applied {real} NOT NULL)"
)


def ddl(statement: str, dialect: Dialect) -> str:
    return statement.format(**_TYPES[dialect])


def numbered(sql: str) -> str:
    """`?` placeholders → PostgreSQL's `$1, $2, …` (our SQL has no literal '?' anywhere)."""
    parts = sql.split("?")
    return parts[0] + "".join(f"${i}{part}" for i, part in enumerate(parts[1:], 1))
