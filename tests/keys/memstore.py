"""A dict-backed Store double, used only until the real SQLite store lands on main (then deleted)."""

from __future__ import annotations

from smolgate.store import AuditRow, KeyRow, UsageRow


class MemStore:
    url_display = "memory"

    def __init__(self) -> None:
        self.rows: dict[str, KeyRow] = {}
        self.usage: list[UsageRow] = []
        self.audits: list[AuditRow] = []

    async def open(self) -> None: ...
    async def close(self) -> None: ...

    async def add_usage(self, rows: list[UsageRow]) -> None:
        self.usage += rows

    async def key_spend(self, key_id: str, since: float) -> float:
        return sum(r.cost_usd for r in self.usage if r.key_id == key_id and r.ts >= since)

    async def add_key(self, key: KeyRow) -> None:
        self.rows[key.id] = key

    async def key_by_hash(self, hash: str) -> KeyRow | None:
        return next((k for k in self.rows.values() if k.hash == hash), None)

    async def key(self, id_or_name: str) -> KeyRow | None:
        return self.rows.get(id_or_name) or next(
            (k for k in self.rows.values() if k.name == id_or_name), None
        )

    async def keys(self, include_revoked: bool = False) -> list[KeyRow]:
        return [k for k in self.rows.values() if include_revoked or k.revoked is None]

    async def update_key(self, key: KeyRow) -> None:
        self.rows[key.id] = key

    async def audit(self, row: AuditRow) -> None:
        self.audits.append(row)

    async def audit_log(self, limit: int = 100, since: float | None = None) -> list[AuditRow]:
        return self.audits[-limit:]
