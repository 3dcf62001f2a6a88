"""The control plane's durable state: usage ledger (+ rollups), virtual keys, provider accounts added at run time
(their keys encrypted), and the audit log. One interface (`Store`, base.py), two backends: SQLite (default, a file
in the data dir) and PostgreSQL (`store: postgresql://…`, for several replicas)."""

from .base import Conflict, Store, StoreError
from .records import (
    AccountRow,
    AuditRow,
    KeyRow,
    UsageBucket,
    UsageRow,
)

__all__ = ["AccountRow", "AuditRow", "Conflict", "KeyRow", "Store", "StoreError", "UsageBucket", "UsageRow"]
