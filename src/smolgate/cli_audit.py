"""`smolgate audit`: the audit log as a table, newest first."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .cli_checks import fail
from .cli_store import CONFIG_OPTION, load, with_store
from .observability.access import one_line
from .timespec import parse_time


def audit_cmd(
    since: str | None = typer.Option(None, "--since", help="e.g. 30m, 24h, 7d, or Unix seconds"),
    limit: int = typer.Option(50, "--limit", min=1, max=10_000),
    config: Path | None = CONFIG_OPTION,
) -> None:
    """Show who changed what, when, from where."""
    try:
        ts = parse_time(since) if since else None
    except ValueError as exc:
        fail(f"--since: {exc}")
    rows = with_store(load(config), lambda store: store.audit_log(limit, ts))
    t = Table("time (UTC)", "actor", "action", "target", "from", "detail")
    for r in rows:
        t.add_row(
            datetime.fromtimestamp(r.ts, UTC).strftime("%Y-%m-%d %H:%M:%S"),
            escape(r.actor),
            escape(r.action),
            escape(one_line(r.target or "-", 1000)),
            escape(one_line(r.source or "-", 1000)),
            escape(one_line(" ".join(f"{k}={v}" for k, v in r.detail.items()), 1000)),
        )
    Console().print(t)
