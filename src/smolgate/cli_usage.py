"""`smolgate usage`: who and what spent how much, from the store's rollups (a rich table, or CSV on stdout).

Registered in cli.py with `app.add_typer(usage_app, name="usage")`. It opens the store the config names (without
`--config`: the default SQLite file in the data dir, created empty on first use) and only reads the ledger, so it
runs beside a serving gateway.
"""

from __future__ import annotations

import asyncio
import csv
import sys
from pathlib import Path

import typer
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .cli_checks import fail
from .config import Config, ConfigError, load_config
from .observability.access import one_line
from .store import StoreError, UsageBucket
from .store.records import GroupBy
from .store.sql import MAX_TEXT
from .usage_query import GROUPS, derived, parse_group, parse_window

usage_app = typer.Typer(add_completion=False, help="Usage and cost from the ledger.")

# short headers: the whole table fits 80 columns for usual figures (averages are per request, in ms)
COLUMNS = ("group", "reqs", "err %", "input", "cached", "output", "reason", "cost $", "lat ms", "ttft ms")
CSV_COLUMNS = (
    "group",
    "requests",
    "errors",
    "input_tokens",
    "cached_tokens",
    "cache_write_tokens",
    "output_tokens",
    "reasoning_tokens",
    "cost_usd",
    "avg_latency_ms",
    "avg_ttft_ms",
)


async def _read(
    cfg: Config, since: float, until: float, by: GroupBy | None, limit: int
) -> tuple[list[UsageBucket], UsageBucket]:
    """The groups (none without `by`) and the window's total."""
    from .store.open import open_store

    store = await open_store(cfg)
    try:
        groups = await store.usage_totals(since, until, by, limit) if by is not None else []
        total = await store.usage_totals(since, until, None, 1)
    finally:
        await store.close()
    return groups, total[0] if total else UsageBucket(group=None)


def _ms(v: float | None) -> str:
    return f"{v:,.0f}" if v is not None else "-"


def _label(b: UsageBucket) -> str:
    """A group as a table cell: it may be a client's own model name, so no markup and no control characters."""
    if b.group is None:
        return "-"  # e.g. requests without a key on an open gateway
    return escape(one_line(b.group, MAX_TEXT))


def _cells(b: UsageBucket) -> list[str]:
    d = derived(b)
    return [
        f"{b.requests:,}",
        f"{d['error_pct']:.1f}",
        f"{b.input_tokens:,}",
        f"{b.cached_tokens:,}",
        f"{b.output_tokens:,}",
        f"{b.reasoning_tokens:,}",
        f"{b.cost_usd:,.4f}",
        _ms(d["avg_latency_ms"]),
        _ms(d["avg_ttft_ms"]),
    ]


def _table(groups: list[UsageBucket], total: UsageBucket, title: str) -> Table:
    rows = [[_label(b), *_cells(b)] for b in groups]
    last = ["total", *_cells(total)]
    t = Table(title=title, box=box.SIMPLE_HEAD, collapse_padding=True, pad_edge=False)
    # A narrow terminal folds the group names first: figures keep their width.
    t.add_column(COLUMNS[0], overflow="fold", ratio=1)
    for i, name in enumerate(COLUMNS[1:], 1):
        t.add_column(
            name, justify="right", min_width=max(len(x) for x in [name, *(r[i] for r in [*rows, last])])
        )
    for r in rows:
        t.add_row(*r)
    if rows:
        t.add_section()
    t.add_row(*last)
    return t


def _csv(rows: list[tuple[str, UsageBucket]]) -> None:
    out = csv.writer(sys.stdout, lineterminator="\n")
    out.writerow(CSV_COLUMNS)
    for label, b in rows:
        d = derived(b)
        out.writerow(
            (
                label,
                b.requests,
                b.errors,
                b.input_tokens,
                b.cached_tokens,
                b.cache_write_tokens,
                b.output_tokens,
                b.reasoning_tokens,
                f"{b.cost_usd:.6f}",
                "" if d["avg_latency_ms"] is None else f"{d['avg_latency_ms']:.1f}",
                "" if d["avg_ttft_ms"] is None else f"{d['avg_ttft_ms']:.1f}",
            )
        )


@usage_app.callback(invoke_without_command=True)
def usage(
    since: str = typer.Option(
        "24h", help="start: a duration ago (15m, 24h, 7d, 30d), Unix seconds or ISO 8601"
    ),
    until: str | None = typer.Option(None, help="end (the same forms); default now"),
    by: str | None = typer.Option(None, help=f"one row per {' | '.join(GROUPS)}; default one total row"),
    limit: int = typer.Option(50, min=1, max=1000, help="at most this many groups (the costliest)"),
    as_csv: bool = typer.Option(False, "--csv", help="CSV on stdout instead of a table"),
    config: Path | None = typer.Option(
        None, "--config", "-c", help="the gateway's config (its store); default the data dir's SQLite file"
    ),
) -> None:
    """Requests, tokens, cost and latency over a window, in total or per key / model / account / …"""
    try:
        start, end = parse_window(since, until)
        group = parse_group(by)
    except ValueError as exc:
        fail(str(exc))
    try:
        cfg = load_config(config) if config is not None else Config()
    except ConfigError as exc:  # its message names field and line, never a credential (config.py)
        fail(f"config error: {exc}")
    try:
        groups, total = asyncio.run(_read(cfg, start, end, group, limit))
    except (StoreError, OSError) as exc:  # one line, any password masked (store/open.py)
        fail(f"cannot read the usage ledger: {exc}", 1)
    except Exception as exc:  # a driver's message might quote the URL: its type only
        fail(f"cannot read the usage ledger: {type(exc).__name__}", 1)
    if as_csv:  # for machines: the groups, or the one total (no total row to skip when summing)
        _csv([(_label(b), b) for b in groups] if group is not None else [("all", total)])
        return
    when = f"since {since}" + (f" until {until}" if until else "")
    Console().print(_table(groups, total, f"usage {when}" + (f" by {group}" if group else "")))
