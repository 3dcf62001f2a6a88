"""`SqlStore`: every `Store` method written once, as parameterised SQL both SQLite and PostgreSQL accept.

A backend (sqlite.py, postgres.py) supplies four primitives — `_fetch`, `_execute`, `_batch` (statements in one
transaction) and `_migrate` — and its dialect; `?` placeholders become `$n` for PostgreSQL (schema.numbered).
No value is ever formatted into SQL: the only interpolated names are column names from fixed tables here.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from functools import cache
from typing import Any

import msgspec

from .base import StoreError
from .histogram import BUCKETS
from .records import AccountRow, AuditRow, GroupBy, KeyRow, StatusFilter, UsageBucket, UsageRow
from .rollup import Span
from .schema import DIM_TABLES, ROLLUP_HISTS, ROLLUP_SUMS, ROLLUP_TABLES, Dialect, numbered
from .usage_sql import MAX_TEXT as MAX_TEXT  # (the CLI's limit on a filter's value)
from .usage_sql import USAGE_COLS, insert, usage_filter, usage_steps

Row = Sequence[Any]
_KEY_COLS = tuple(KeyRow.__struct_fields__)
_ACCOUNT_COLS = tuple(AccountRow.__struct_fields__)
_AUDIT_COLS = ("ts", "actor", "action", "target", "source", "detail")


_INSERT_KEY = insert("keys", _KEY_COLS)
_INSERT_ACCOUNT = insert("accounts", _ACCOUNT_COLS)
_INSERT_AUDIT = insert("audit", _AUDIT_COLS)

# Sums over rollup rows (PostgreSQL's SUM(bigint) is numeric: cast back so both backends return integers;
# SUM(integer), the histograms', is already a bigint).
_PLAIN_SUMS = ", ".join(
    f"CAST(SUM({c}) AS BIGINT)" if c not in ("cost_usd", "latency_ms_sum", "ttft_ms_sum") else f"SUM({c})"
    for c in ROLLUP_SUMS
)
_SUMS = ", ".join([_PLAIN_SUMS] + [f"SUM({c})" for c in ROLLUP_HISTS])


class SqlStore(ABC):
    dialect: Dialect
    url_display: str

    # ---------------------------------------------------------------- backend primitives
    @abstractmethod
    async def _fetch(self, sql: str, args: Sequence[object] = ()) -> list[Row]: ...

    @abstractmethod
    async def _execute(self, sql: str, args: Sequence[object] = ()) -> int:
        """Run one statement; the number of rows it changed."""

    @abstractmethod
    async def _batch(self, steps: list[tuple[str, list[tuple[object, ...]]]]) -> None:
        """Each (statement, rows) executed for every row, all in one transaction."""

    def _q(self, sql: str) -> str:
        return _numbered(sql) if self.dialect == "postgres" else sql

    # ---------------------------------------------------------------- usage ledger
    async def add_usage(self, rows: list[UsageRow]) -> None:
        if rows:
            await self._batch([(self._q(sql), values) for sql, values in usage_steps(rows, self.dialect)])

    async def usage_totals(
        self,
        since: float,
        until: float | None = None,
        by: GroupBy | None = None,
        limit: int = 100,
        percentiles: bool = False,
    ) -> list[UsageBucket]:
        # the histograms only when asked: 44 more sums per rollup row read cost ~3x
        span, args = Span(since, time.time() if until is None else until).sql(by or "all", hists=percentiles)
        sums = _SUMS if percentiles else _PLAIN_SUMS
        # cost, then requests; the group last (ties in a stable order on both backends)
        sql = f"SELECT grp, {sums} FROM {span} GROUP BY grp ORDER BY 9 DESC, 2 DESC, 1 LIMIT ?"
        rows = await self._fetch(self._q(sql), [*args, limit])
        out = [_bucket(str(r[0]) or None if by else None, None, r[1:]) for r in rows]
        if not by:  # SUM over nothing is NULL: the one "all" row reads as zeros
            return [b for b in out if b.requests] or [UsageBucket(group=None)]
        return out

    async def usage_series(
        self, since: float, until: float | None = None, step: int = 3600, key_id: str | None = None
    ) -> list[UsageBucket]:
        if step != 60 and (step <= 0 or step % 3600):
            raise ValueError("step must be 60 or a multiple of 3600 seconds")
        until = time.time() if until is None else until
        lo, hi = since // step * step, until
        args: list[object] = [step, step, int(lo), int(-(-hi // 60) * 60)]
        if step == 60:  # the combinations, for one hour or so
            where = "bucket >= ? AND bucket < ?" + (" AND key_id = ?" if key_id is not None else "")
            table = ROLLUP_TABLES[60]
        else:  # one dimension: everything, or the key's
            where = "bucket >= ? AND bucket < ? AND dim = ?" + (
                " AND value = ?" if key_id is not None else ""
            )
            table = DIM_TABLES[86400 if step % 86400 == 0 else 3600]
            args.append("all" if key_id is None else "key")
        if key_id is not None:
            args.append(key_id)
        sql = f"SELECT (bucket / ?) * ?, {_SUMS} FROM {table} WHERE {where} GROUP BY 1 ORDER BY 1"
        rows = await self._fetch(self._q(sql), args)
        return [_bucket(key_id, float(r[0]), r[1:]) for r in rows]

    async def recent_usage(
        self,
        limit: int = 100,
        key_id: str | None = None,
        *,
        since: float | None = None,
        until: float | None = None,
        alias: str | None = None,
        account: str | None = None,
        status: StatusFilter | None = None,
    ) -> list[UsageRow]:
        conds, args = usage_filter(since, until, key_id, alias, account, status)
        where = f" WHERE {' AND '.join(conds)}" if conds else ""
        sql = f"SELECT {', '.join(USAGE_COLS)} FROM usage{where} ORDER BY ts DESC LIMIT ?"
        rows = await self._fetch(self._q(sql), [*args, limit])
        return [_usage_row(r) for r in rows]

    async def key_spend(self, key_id: str, since: float) -> float:
        span, args = Span(since, time.time() + 60).sql("key", key_id)
        rows = await self._fetch(self._q(f"SELECT SUM(cost_usd) FROM {span}"), args)
        return float(rows[0][0] or 0.0) if rows else 0.0

    async def prune(self, raw_before: float, rollups_before: float) -> int:
        n = await self._execute(self._q("DELETE FROM usage WHERE ts < ?"), [float(raw_before)])
        for table in (*ROLLUP_TABLES.values(), *DIM_TABLES.values()):
            await self._execute(self._q(f"DELETE FROM {table} WHERE bucket < ?"), [int(rollups_before)])
        return n

    # ---------------------------------------------------------------- virtual keys
    async def add_key(self, key: KeyRow) -> None:
        await self._batch([(self._q(_INSERT_KEY), [_key_values(key)])])

    async def key_by_hash(self, hash: str) -> KeyRow | None:
        rows = await self._fetch(self._q(f"SELECT {', '.join(_KEY_COLS)} FROM keys WHERE hash = ?"), [hash])
        return _key_row(rows[0]) if rows else None

    async def key(self, id_or_name: str) -> KeyRow | None:
        """By id; else the newest live key with that name (names may repeat once revoked)."""
        sql = (
            f"SELECT {', '.join(_KEY_COLS)} FROM keys WHERE id = ? OR name = ?"
            " ORDER BY CASE WHEN id = ? THEN 0 WHEN revoked IS NULL THEN 1 ELSE 2 END, created DESC LIMIT 1"
        )
        rows = await self._fetch(self._q(sql), [id_or_name, id_or_name, id_or_name])
        return _key_row(rows[0]) if rows else None

    async def keys(self, include_revoked: bool = False) -> list[KeyRow]:
        where = "" if include_revoked else " WHERE revoked IS NULL"
        rows = await self._fetch(self._q(f"SELECT {', '.join(_KEY_COLS)} FROM keys{where} ORDER BY created"))
        return [_key_row(r) for r in rows]

    async def update_key(self, key: KeyRow) -> None:
        cols = _KEY_COLS[1:]
        sql = f"UPDATE keys SET {', '.join(f'{c} = ?' for c in cols)} WHERE id = ?"
        values = _key_values(key)
        if not await self._execute(self._q(sql), [*values[1:], values[0]]):
            raise StoreError(f"no key with id {key.id!r}")

    # ---------------------------------------------------------------- provider accounts
    async def add_account(self, account: AccountRow) -> None:
        await self._batch([(self._q(_INSERT_ACCOUNT), [_account_values(account)])])

    async def accounts(self) -> list[AccountRow]:
        rows = await self._fetch(self._q(f"SELECT {', '.join(_ACCOUNT_COLS)} FROM accounts ORDER BY created"))
        return [_account_row(r) for r in rows]

    async def update_account(self, account: AccountRow) -> None:
        cols = _ACCOUNT_COLS[1:]
        sql = f"UPDATE accounts SET {', '.join(f'{c} = ?' for c in cols)} WHERE id = ?"
        values = _account_values(account)
        if not await self._execute(self._q(sql), [*values[1:], values[0]]):
            raise StoreError(f"no account with id {account.id!r}")

    async def update_accounts(self, accounts: list[AccountRow]) -> None:
        if not accounts:
            return
        cols = _ACCOUNT_COLS[1:]
        sql = f"UPDATE accounts SET {', '.join(f'{c} = ?' for c in cols)} WHERE id = ?"
        rows = [(*v[1:], v[0]) for v in map(_account_values, accounts)]
        await self._batch([(self._q(sql), rows)])

    async def delete_account(self, id: str) -> bool:
        return await self._execute(self._q("DELETE FROM accounts WHERE id = ?"), [id]) > 0

    # ---------------------------------------------------------------- audit log
    async def audit(self, row: AuditRow) -> None:
        detail = msgspec.json.encode(row.detail).decode()
        values = tuple(
            _db_value(v) for v in (float(row.ts), row.actor, row.action, row.target, row.source, detail)
        )
        await self._batch([(self._q(_INSERT_AUDIT), [values])])

    async def audit_log(self, limit: int = 100, since: float | None = None) -> list[AuditRow]:
        cols = ", ".join(_AUDIT_COLS)
        where, args = (" WHERE ts >= ?", [float(since)]) if since is not None else ("", [])
        sql = f"SELECT {cols} FROM audit{where} ORDER BY ts DESC, id DESC LIMIT ?"
        rows = await self._fetch(self._q(sql), [*args, limit])
        return [
            AuditRow(
                ts=r[0], actor=r[1], action=r[2], target=r[3], source=r[4], detail=msgspec.json.decode(r[5])
            )
            for r in rows
        ]


@cache
def _numbered(sql: str) -> str:
    return numbered(sql)


def _db_value(v: object) -> object:
    """bool → 0/1 (one column type on both backends); text without NUL, which PostgreSQL's TEXT cannot hold (a
    client's model name could carry one, and must not make a batch fail forever)."""
    if isinstance(v, bool):
        return int(v)
    if isinstance(v, str) and "\x00" in v:
        return v.replace("\x00", "\ufffd")
    return v


def _usage_row(r: Row) -> UsageRow:
    d = dict(zip(USAGE_COLS, r, strict=True))
    d["stream"], d["local"] = bool(d["stream"]), bool(d["local"])
    return UsageRow(**d)


def _bucket(group: str | None, bucket: float | None, sums: Row) -> UsageBucket:
    v = [x or 0 for x in sums]
    return UsageBucket(
        group=group,
        bucket=bucket,
        requests=int(v[0]),
        errors=int(v[1]),
        input_tokens=int(v[2]),
        cached_tokens=int(v[3]),
        cache_write_tokens=int(v[4]),
        output_tokens=int(v[5]),
        reasoning_tokens=int(v[6]),
        cost_usd=float(v[7]),
        latency_ms_sum=float(v[8]),
        ttft_ms_sum=float(v[9]),
        ttft_count=int(v[10]),
        latency_hist=tuple(int(x) for x in v[_LAT:_TTFT]),  # () when not read
        ttft_hist=tuple(int(x) for x in v[_TTFT:]),
    )


_LAT = len(ROLLUP_SUMS)  # the histograms' place in a row of _SUMS
_TTFT = _LAT + BUCKETS


def _key_values(k: KeyRow) -> tuple[object, ...]:
    models = None if k.models is None else msgspec.json.encode(k.models).decode()
    return tuple(models if c == "models" else _db_value(getattr(k, c)) for c in _KEY_COLS)


def _key_row(r: Row) -> KeyRow:
    d = dict(zip(_KEY_COLS, r, strict=True))
    if d["models"] is not None:
        d["models"] = msgspec.json.decode(d["models"])
    return KeyRow(**d)


def _account_values(a: AccountRow) -> tuple[object, ...]:
    return tuple(_db_value(getattr(a, c)) for c in _ACCOUNT_COLS)


def _account_row(r: Row) -> AccountRow:
    d = dict(zip(_ACCOUNT_COLS, r, strict=True))
    d["enabled"], d["key_ciphertext"] = bool(d["enabled"]), bytes(d["key_ciphertext"])
    return AccountRow(**d)
