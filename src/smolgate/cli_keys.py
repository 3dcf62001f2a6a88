"""`smolgate keys …`: virtual keys from the command line, straight in the store the config names.

`create` and `rotate` print the secret once, alone on stdout (`KEY=$(smolgate keys create --name ci)` works);
everything else goes to stderr or a table. A running gateway sees changes within seconds (vkeys_auth.py).
"""

from __future__ import annotations

import functools
import time
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Column, Table

from . import vkeys_manage as manage
from .cli_checks import fail, one_of
from .cli_store import CONFIG_OPTION, audit, load, with_store
from .config import Config
from .store import KeyRow, Store
from .vkeys import PERIODS, load_pepper, status

keys_app = typer.Typer(no_args_is_help=True, help="Virtual client keys: create, list, show, revoke, rotate.")
err = Console(stderr=True, highlight=False)


def _out() -> Console:
    return Console(highlight=False)  # made per command: it reads the terminal's width then


def store_has_keys(cfg: Config) -> bool:
    """Whether the config's store holds any virtual key (then `serve` may bind beyond loopback)."""

    async def job(store: Store) -> bool:
        return bool(await store.keys(include_revoked=True))

    return with_store(cfg, job)


def _audit(store: Store) -> manage.Audit:
    return functools.partial(audit, store)


async def _find(store: Store, ident: str) -> KeyRow:
    row = await manage.find(store, ident)
    if row is None:
        fail(f"no key '{ident}'")
    return row


def _when(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(ts)) if ts is not None else "-"


def _limits(row: KeyRow) -> str:
    parts = [f"{n} {v}" for n, v in (("rpm", row.rpm), ("tpm", row.tpm), ("conc", row.max_concurrency)) if v]
    if row.models is not None:
        parts.append("models " + ",".join(row.models))
    return "; ".join(parts) or "-"


def _budget(row: KeyRow, spend: float | None = None) -> str:
    if row.budget_usd is None:
        return "-" if spend is None else f"${spend:.4f} spent"
    used = f"${spend:.4f} / " if spend is not None else ""
    return (
        f"{used}${row.budget_usd:.2f} per {row.period}"
        if row.period != "total"
        else f"{used}${row.budget_usd:.2f}"
    )


def _secret(row: KeyRow, secret: str, what: str) -> None:
    err.print(f"[green]{what}[/green] key {row.id} ({escape(row.name)}), prefix {row.prefix}")
    err.print("the secret below is shown only this once; store it now:")
    typer.echo(secret)


@keys_app.command()
def create(
    name: str = typer.Option(..., "--name", help="a label (unique among active keys)"),
    models: str | None = typer.Option(None, "--models", help="comma-separated model names it may use"),
    rpm: int | None = typer.Option(None, "--rpm", help="requests per minute"),
    tpm: int | None = typer.Option(None, "--tpm", help="tokens per minute"),
    max_concurrency: int | None = typer.Option(None, "--max-concurrency", help="requests at once"),
    budget_usd: float | None = typer.Option(None, "--budget-usd", help="spend limit in USD"),
    period: str = typer.Option("total", "--period", help="budget period: day, month or total (UTC)"),
    expires: str | None = typer.Option(None, "--expires", help="lifetime, e.g. 30d, 12h"),
    privacy: str | None = typer.Option(
        None, "--privacy", help="its requests' loosest policy: redact or local"
    ),
    config: Path | None = CONFIG_OPTION,
) -> None:
    """Create a key; its secret is printed once."""
    one_of("--period", period, PERIODS)
    cfg = load(config)
    fields = {
        "name": name,
        "models": models,
        "rpm": rpm,
        "tpm": tpm,
        "max_concurrency": max_concurrency,
        "budget_usd": budget_usd,
        "period": period,
        "expires": expires,
        "privacy": privacy,
    }

    async def job(store: Store) -> tuple[KeyRow, str]:
        return await manage.create(store, load_pepper(cfg), fields, _audit(store))

    row, secret = with_store(cfg, job)
    _secret(row, secret, "created")


@keys_app.command("list")
def list_keys(
    all_: bool = typer.Option(False, "--all", help="include revoked keys"),
    config: Path | None = CONFIG_OPTION,
) -> None:
    """Every key with its limits, budget, spend this period, expiry and status."""
    cfg = load(config)

    async def job(store: Store) -> list[tuple[KeyRow, float]]:
        return [(r, await manage.spend(store, r)) for r in await store.keys(include_revoked=all_)]

    rows = with_store(cfg, job)
    t = Table(
        Column("id", no_wrap=True),
        "name",
        Column("prefix", no_wrap=True),
        "limits",
        "budget / spend",
        "expires",
        "status",
    )
    now = time.time()
    for row, spent in rows:
        t.add_row(
            row.id,
            escape(row.name),
            row.prefix,
            escape(_limits(row)),
            _budget(row, spent),
            _when(row.expires),
            status(row, now),
        )
    _out().print(t)


@keys_app.command()
def show(ident: str = typer.Argument(..., metavar="ID|NAME"), config: Path | None = CONFIG_OPTION) -> None:
    """One key in full (never its secret or hash)."""
    cfg = load(config)

    async def job(store: Store) -> tuple[KeyRow, float]:
        row = await _find(store, ident)
        return row, await manage.spend(store, row)

    row, spent = with_store(cfg, job)
    t = Table("field", "value", show_header=False)
    for k, v in (
        ("id", row.id),
        ("name", escape(row.name)),
        ("prefix", row.prefix),
        ("status", status(row, time.time())),
        ("created", _when(row.created)),
        ("expires", _when(row.expires)),
        ("revoked", _when(row.revoked)),
        ("limits", escape(_limits(row))),
        ("budget / spend", _budget(row, spent)),
    ):
        t.add_row(k, v)
    _out().print(t)


@keys_app.command()
def revoke(ident: str = typer.Argument(..., metavar="ID|NAME"), config: Path | None = CONFIG_OPTION) -> None:
    """Revoke a key: running gateways refuse it within seconds."""
    cfg = load(config)

    async def job(store: Store) -> KeyRow:
        return await manage.revoke(store, await _find(store, ident), _audit(store))

    row = with_store(cfg, job)
    err.print(f"[green]revoked[/green] key {row.id} ({escape(row.name)}), prefix {row.prefix}")


@keys_app.command()
def rotate(ident: str = typer.Argument(..., metavar="ID|NAME"), config: Path | None = CONFIG_OPTION) -> None:
    """A new secret for a key (same id, limits and spend); the old secret stops working."""
    cfg = load(config)

    async def job(store: Store) -> tuple[KeyRow, str]:
        return await manage.rotate(store, load_pepper(cfg), await _find(store, ident), _audit(store))

    row, secret = with_store(cfg, job)
    _secret(row, secret, "rotated")
