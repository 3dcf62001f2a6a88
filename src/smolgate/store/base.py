"""The store interface. Every method is a parameterised query in both backends (sqlite.py, postgres.py);
no caller builds SQL. Usage rows are written in batches by the ledger writer (ledger.py), never on the request
path; reads for dashboards come from rollups, never raw rows."""

from __future__ import annotations

from typing import Protocol

from .records import AccountRow, AuditRow, GroupBy, KeyRow, StatusFilter, UsageBucket, UsageRow


class StoreError(RuntimeError):
    """The store cannot be opened or used (a one-line message, any password masked), or a row is missing."""


class Rejected(StoreError):
    """The database refused these values (not a connection problem: retrying the same rows will not help)."""


class Conflict(Rejected):
    """A row with that id, key hash or (provider, account name) exists already."""


class Store(Protocol):
    url_display: str  # the store's URL with any password masked

    async def open(self) -> None:
        """Connect and run pending schema migrations (versioned; idempotent across replicas)."""

    async def close(self) -> None: ...

    # ---------------------------------------------------------------- usage ledger
    async def add_usage(self, rows: list[UsageRow]) -> None:
        """Insert raw rows and fold them into the per-minute and per-hour rollups, in one transaction."""

    async def usage_totals(
        self,
        since: float,
        until: float | None = None,
        by: GroupBy | None = None,
        limit: int = 100,
        percentiles: bool = False,
    ) -> list[UsageBucket]:
        """Totals per group (ordered by cost, then requests, descending), from rollups; with `percentiles`, the
        latency and TTFT histograms too (read as percentiles by usage_query.derived; slower to sum)."""

    async def usage_series(
        self, since: float, until: float | None = None, step: int = 3600, key_id: str | None = None
    ) -> list[UsageBucket]:
        """A time series in buckets of `step` seconds (60 or a multiple of 3600), from rollups."""

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
        """The newest raw rows, newest first, filtered (every filter given must hold): arrival in [since, until),
        key id, alias, account (a name, or "provider/account"), status ("ok" < 400, "error" ≥ 400, or a code)."""

    async def key_spend(self, key_id: str, since: float) -> float:
        """USD spent by a key since `since` (budget checks), from rollups."""

    async def prune(self, raw_before: float, rollups_before: float) -> int:
        """Retention: delete raw rows and rollups older than the cut-offs; the number of raw rows deleted."""

    # ---------------------------------------------------------------- virtual keys
    async def add_key(self, key: KeyRow) -> None: ...
    async def key_by_hash(self, hash: str) -> KeyRow | None: ...
    async def key(self, id_or_name: str) -> KeyRow | None: ...
    async def keys(self, include_revoked: bool = False) -> list[KeyRow]: ...
    async def update_key(self, key: KeyRow) -> None:
        """Replace the row with this id (revoke, rotate: a new hash and prefix)."""

    # ---------------------------------------------------------------- provider accounts added at run time
    async def add_account(self, account: AccountRow) -> None: ...
    async def accounts(self) -> list[AccountRow]: ...
    async def update_account(self, account: AccountRow) -> None: ...
    async def update_accounts(self, accounts: list[AccountRow]) -> None:
        """Replace several rows in one transaction (master-key rotation re-encrypts every key at once)."""

    async def delete_account(self, id: str) -> bool: ...

    # ---------------------------------------------------------------- audit log
    async def audit(self, row: AuditRow) -> None: ...
    async def audit_log(self, limit: int = 100, since: float | None = None) -> list[AuditRow]: ...
