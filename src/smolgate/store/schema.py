"""The store's tables, as versioned migrations shared by both backends.

Each migration is a list of statements written once, with `{real}`, `{big}`, `{blob}` and `{serial}` standing for
the column types that differ between SQLite and PostgreSQL. A backend applies the migrations it has not applied
yet, in order, in one transaction, holding a lock that makes two replicas starting at once take turns (SQLite:
`BEGIN IMMEDIATE`; PostgreSQL: a transaction-scoped advisory lock), and records each in `schema_version`.

Rollups (`usage_minute`, `usage_hour`, `usage_day`) hold one row per bucket × key × alias × provider × account × upstream
model × status class. Missing dimensions are stored as '' (a NULL would defeat the unique index that the upserts
conflict on) and read back as None. `usage_hour_dim` and `usage_day_dim` hold the same sums per bucket × one
dimension (`DIMENSIONS`): what the dashboards' totals, series and budgets read, so a 30-day "top keys" reads ~30 rows
per key, not one per key × alias × account × model combination.
"""

from __future__ import annotations

from typing import Literal

from .histogram import LATENCY_COLS, TTFT_COLS

Dialect = Literal["sqlite", "postgres"]

_TYPES: dict[Dialect, dict[str, str]] = {
    "sqlite": {
        "real": "REAL",
        "big": "INTEGER",
        "blob": "BLOB",
        "serial": "INTEGER PRIMARY KEY",
        "count": "INTEGER NOT NULL DEFAULT 0",
    },
    "postgres": {
        "real": "DOUBLE PRECISION",
        "big": "BIGINT",
        "blob": "BYTEA",
        "serial": "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY",
        "count": "INTEGER",
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
ROLLUP_HISTS = (*LATENCY_COLS, *TTFT_COLS)  # counts per duration bucket (histogram.py); NULL for none
ROLLUP_TABLES = {60: "usage_minute", 3600: "usage_hour", 86400: "usage_day"}  # bucket seconds → table
DIM_TABLES = {3600: "usage_hour_dim", 86400: "usage_day_dim"}  # the same per single dimension (migration 9)

# Each dimension's value over a combination rollup row ('' for none). rollup.dim_values is the same in Python:
# the writers fold the dimension rollups with it, migration 9 filled them from the existing rows with this.
DIMENSIONS: dict[str, str] = {
    "all": "''",
    "key": "key_id",
    "model": "upstream_model",
    "alias": "alias",
    "account": "CASE WHEN provider = '' AND account = '' THEN '' ELSE provider || '/' || account END",
    "provider": "provider",
    "status": "CAST(status_class AS TEXT) || 'xx'",
}


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


_SUM_TYPES = ("big",) * 7 + ("real",) * 3 + ("big",)  # ROLLUP_SUMS' column types


def _dim_rollup(table: str, source: str) -> list[str]:
    """A per-dimension rollup table, filled from the combination rollup `source` (stores that already hold rows)."""
    sums = ", ".join(f"{c} {{{t}}} NOT NULL" for c, t in zip(ROLLUP_SUMS, _SUM_TYPES, strict=True))
    hists = ", ".join(f"{c} {{count}}" for c in ROLLUP_HISTS)
    cols = ", ".join(("bucket", "dim", "value", *ROLLUP_SUMS, *ROLLUP_HISTS))
    totals = ", ".join(f"SUM({c})" for c in (*ROLLUP_SUMS, *ROLLUP_HISTS))
    return [
        f"CREATE TABLE {table} (bucket {{big}} NOT NULL, dim TEXT NOT NULL, value TEXT NOT NULL, {sums}, {hists})",
        # a dimension's rows in a time range (totals, series), and the upserts' conflict target
        f"CREATE UNIQUE INDEX {table}_range ON {table} (dim, bucket, value)",
        *(
            f"INSERT INTO {table} ({cols}) SELECT bucket, '{dim}', {expr}, {totals} FROM {source}"
            f" GROUP BY bucket{'' if dim == 'all' else ', ' + expr}"  # (PostgreSQL refuses GROUP BY '')
            for dim, expr in DIMENSIONS.items()
        ),
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
    # 7: latency and TTFT histograms per rollup row, for percentiles over time (histogram.py). Most buckets of
    # a row are empty: PostgreSQL stores them as NULL (one bit; a zero takes 4 bytes), SQLite as 0 (no payload
    # either way, and its upserts add zeros ~2x faster than they COALESCE NULLs)
    [f"ALTER TABLE {t} ADD COLUMN {c} {{count}}" for t in ROLLUP_TABLES.values() for c in ROLLUP_HISTS],
    # 8: the console's recent-rows filters (sql.usage_filter). Without these, a rare or unused alias or account
    # walked usage_ts through every row (~1 s at 1M rows on SQLite); errors get a partial index holding only
    # their own rows (small, and nothing to update for the successful majority)
    [
        "CREATE INDEX usage_alias_ts ON usage (alias, ts)",
        "CREATE INDEX usage_account_ts ON usage (account, ts)",
        "CREATE INDEX usage_errors_ts ON usage (ts) WHERE status >= 400",
    ],
    # 9: rollups per single dimension (see the top): the totals of a 30-day dashboard read ~1/20 of the rows
    [*_dim_rollup("usage_hour_dim", "usage_hour"), *_dim_rollup("usage_day_dim", "usage_day")],
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
