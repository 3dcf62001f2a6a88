"""`/admin/audit`: the audit log, newest first — who changed what, when, from where (never a secret)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import msgspec

from ...errors import invalid
from ...store import AuditRow
from ...timespec import parse_time
from ..asgi import HttpRequest, Receive, Send
from .common import AdminRoute, reply

if TYPE_CHECKING:
    from ..runtime import Runtime

MAX_LIMIT = 10_000


class AuditLog(msgspec.Struct, kw_only=True):
    entries: list[AuditRow]


def limit_param(query: dict[str, str], default: int = 100) -> int:
    raw = query.get("limit")
    if raw is None:
        return default
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_LIMIT:
        raise invalid(f"limit must be an integer from 1 to {MAX_LIMIT}", param="limit")
    return int(raw)


async def audit_log(
    rt: Runtime, req: HttpRequest, params: dict[str, str], send: Send, receive: Receive
) -> None:
    limit = limit_param(req.query)
    since = None
    if "since" in req.query:
        try:
            since = parse_time(req.query["since"])
        except ValueError as exc:
            raise invalid(str(exc), param="since") from None
    rows = await rt.store.audit_log(limit, since) if rt.store is not None else []
    await reply(send, AuditLog(entries=rows))


ROUTES = [
    AdminRoute(
        "GET",
        "/admin/audit",
        audit_log,
        "the audit log, newest first (since: 24h, 7d or Unix seconds)",
        response=AuditLog,
        query=("limit", "since"),
    )
]
