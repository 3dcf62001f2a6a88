"""The access log: one info line per request, from its finished `RequestRecord`.

Only what the record holds: method, path, status, timings, alias, provider, account name, key id, request id —
never a key, never a body. The path is cut short and stripped of its query (which may carry `?key=`).
"""

from __future__ import annotations

import logging
from typing import overload

from ..telemetry import RequestRecord

log = logging.getLogger("smolgate.access")

_MAX_PATH = 200


@overload
def one_line(text: str, limit: int = ...) -> str: ...
@overload
def one_line(text: None, limit: int = ...) -> None: ...
def one_line(text: str | None, limit: int = _MAX_PATH) -> str | None:
    """Client-chosen text (path, model name) as one printable line: a newline must not forge a log line."""
    if text is None:
        return None
    text = text[:limit]
    return text if text.isprintable() else text.encode("unicode_escape").decode("ascii")


class AccessLog:
    def finished(self, rec: RequestRecord) -> None:
        if not log.isEnabledFor(logging.INFO):
            return
        last = rec.last
        path = one_line(rec.path)
        alias = one_line(rec.alias)
        fields = {
            "method": rec.method,
            "path": path,
            "status": rec.status,
            "latency_ms": round(rec.latency_ms, 1),
            "ttft_ms": round(rec.ttft_ms, 1) if rec.ttft_ms is not None else None,
            "client_protocol": rec.client_protocol,
            "alias": alias,
            "stream": rec.stream,
            "provider": last.provider if last else None,
            "account": last.account if last else None,
            "attempts": len(rec.attempts),
            "key_id": rec.key_id,
            "error_kind": rec.error_kind,
        }
        ttft = f" ttft={rec.ttft_ms:.0f}ms" if rec.ttft_ms is not None else ""
        log.info(
            "%s %s %d %.0fms%s alias=%s provider=%s account=%s key=%s%s (%s)",
            rec.method,
            path,
            rec.status,
            rec.latency_ms,
            ttft,
            alias or "-",
            fields["provider"] or "-",
            fields["account"] or "-",
            rec.key_id or "-",
            f" error={rec.error_kind}" if rec.error_kind else "",
            rec.request_id,
            extra={"fields": fields, "request_id": rec.request_id},
        )
