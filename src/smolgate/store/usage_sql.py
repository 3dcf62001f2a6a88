"""The ledger's row-level SQL, shared by `SqlStore` and the SQLite writer process: a batch's statements (raw rows
tamed, rollups folded) and the recent-rows filter. Fixed SQL with `?` placeholders; values are parameters only."""

from __future__ import annotations

import math
from collections.abc import Sequence

import msgspec

from .records import StatusFilter, UsageRow
from .rollup import fold
from .schema import DIM_TABLES, ROLLUP_DIMS, ROLLUP_HISTS, ROLLUP_SUMS, ROLLUP_TABLES, Dialect

MAX_TEXT = 256  # characters kept of each ledger text field (a client's model name can be anything)
MAX_COUNT = 2**40  # tokens one request may count (an upstream could report anything)
_USAGE_COUNTS = ("input_tokens", "cached_tokens", "cache_write_tokens", "output_tokens", "reasoning_tokens")

USAGE_COLS = tuple(UsageRow.__struct_fields__)


def insert(table: str, cols: Sequence[str]) -> str:
    return f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})"


def _upsert(table: str, dims: Sequence[str], dialect: Dialect) -> str:
    cols = ("bucket", *dims, *ROLLUP_SUMS, *ROLLUP_HISTS)
    adds = [f"{c} = {table}.{c} + excluded.{c}" for c in ROLLUP_SUMS]
    if dialect == "sqlite":  # histogram counts: 0 for none
        adds += [f"{c} = {table}.{c} + excluded.{c}" for c in ROLLUP_HISTS]
    else:  # NULL for none: a sum when both are there, else whichever is
        adds += [
            f"{c} = COALESCE({table}.{c} + excluded.{c}, {table}.{c}, excluded.{c})" for c in ROLLUP_HISTS
        ]
    conflict = f"ON CONFLICT ({', '.join(('bucket', *dims))})"
    return f"{insert(table, cols)} {conflict} DO UPDATE SET {', '.join(adds)}"


INSERT_USAGE = insert("usage", USAGE_COLS)
UPSERTS: dict[Dialect, dict[str, str]] = {  # by table
    d: {
        **{table: _upsert(table, ROLLUP_DIMS, d) for table in ROLLUP_TABLES.values()},
        **{table: _upsert(table, ("dim", "value"), d) for table in DIM_TABLES.values()},
    }
    for d in ("sqlite", "postgres")
}


def usage_filter(
    since: float | None,
    until: float | None,
    key_id: str | None,
    alias: str | None,
    account: str | None,
    status: StatusFilter | None,
) -> tuple[list[str], list[object]]:
    """WHERE conditions (fixed SQL) and their parameters for raw ledger rows. `account` is a name (any
    provider's), or "provider/account" as the usage totals label it; `status` "ok" (< 400), "error" (≥ 400) or one code."""
    conds: list[str] = []
    args: list[object] = []
    times = (None if t is None else float(t) for t in (since, until))
    for cond, value in zip(
        ("ts >= ?", "ts < ?", "key_id = ?", "alias = ?"), (*times, key_id, alias), strict=True
    ):
        if value is not None:
            conds.append(cond)
            args.append(value)
    if account is not None:  # "provider/account" splits at the first "/" (a provider's name has none)
        provider, _, name = account.partition("/")
        conds.append("account = ? AND provider = ?" if name else "account = ?")
        args += [name, provider] if name else [account]
    if status == "ok":
        conds.append("status < 400")
    elif status == "error":
        conds.append("status >= 400")
    elif status is not None:
        # an error code also states the partial index's condition, so the planners can see it applies
        conds.append("status = ? AND status >= 400" if int(status) >= 400 else "status = ?")
        args.append(int(status))
    return conds, args


def usage_steps(
    rows: list[UsageRow], dialect: Dialect = "sqlite"
) -> list[tuple[str, list[tuple[object, ...]]]]:
    """A batch's statements (`?` placeholders) and their rows, for one transaction: the tamed raw rows, then the
    rollup upserts folded from them (combinations by minute/hour/day, dimensions by hour/day). Shared by `add_usage` and the SQLite writer process."""
    rows = [tame(r) for r in rows]
    upserts = UPSERTS[dialect]
    folded = fold(rows, 0 if dialect == "sqlite" else None)
    return [(INSERT_USAGE, [_usage_values(r) for r in rows])] + [
        (sql, folded[table]) for table, sql in upserts.items()
    ]


_USAGE_TEXT = [
    c for c, t in zip(USAGE_COLS, UsageRow.__annotations__.values(), strict=True) if "str" in str(t)
]


_BOOLS_AT = tuple(i for i, c in enumerate(USAGE_COLS) if c in ("stream", "local"))


def _usage_values(r: UsageRow) -> tuple[object, ...]:
    """A tamed row's values in column order; bools as 0/1 (one column type on both backends)."""
    values = list(msgspec.structs.astuple(r))
    for i in _BOOLS_AT:
        values[i] = int(values[i])
    return tuple(values)


def tame(r: UsageRow) -> UsageRow:
    """A ledger row as stored: text at most MAX_TEXT characters without NUL (the alias is the client's own
    string), and finite numbers (SQLite stores NaN as NULL, which NOT NULL refuses). A row the database refuses
    would fail its whole batch on every retry."""
    fix: dict[str, object] = {}
    for c in _USAGE_TEXT:
        v = getattr(r, c)
        if v is not None and (len(v) > MAX_TEXT or "\x00" in v):
            fix[c] = v[:MAX_TEXT].replace("\x00", "\ufffd")
    for c in _USAGE_COUNTS:  # an upstream reports the tokens: keep rollup sums far from BIGINT's limit
        v = getattr(r, c)
        if not 0 <= v <= MAX_COUNT:
            fix[c] = min(max(v, 0), MAX_COUNT)
    for c in ("cost_usd", "latency_ms", "ttft_ms"):
        v = getattr(r, c)
        if v is not None and not math.isfinite(v):
            fix[c] = None if c == "ttft_ms" else 0.0
    return msgspec.structs.replace(r, **fix) if fix else r
