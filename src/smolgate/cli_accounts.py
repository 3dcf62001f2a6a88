"""`smolgate accounts`: live pool state from a running server (the default, or `status`), and the accounts
added at run time — `add`, `list`, `enable`, `disable`, `remove` — written to the store, which running
gateways read (at once for their own admin API, else within runtime_accounts.REFRESH seconds or on reload).

An API key never comes from a command-line argument (`ps` shows those): a prompt without echo, `--key-env
VAR`, or `--key-stdin`.
"""

from __future__ import annotations

import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import typer
from rich.console import Console
from rich.table import Table

from .cli_checks import fail
from .cli_store import CONFIG_OPTION, audit, load, with_store
from .crypto import load_keyring
from .store import AccountRow, Store
from .stored_accounts import AccountInputError, Limits, add

accounts_app = typer.Typer(
    invoke_without_command=True,
    help="Provider accounts: live state from a running server, and accounts added at run time.",
)
console = Console(stderr=True)

URL_OPTION = typer.Option("http://127.0.0.1:8000", "--url", help="a running smolgate")
ADMIN_OPTION = typer.Option(
    None,
    "--admin-key",
    envvar="SMOLGATE_ADMIN_KEY",
    help="the server's admin key (needed unless it runs on this machine without one)",
)


@accounts_app.callback()
def accounts_main(ctx: typer.Context, url: str = URL_OPTION, admin_key: str | None = ADMIN_OPTION) -> None:
    """Show each upstream account's health from a running server (or a subcommand)."""
    if ctx.invoked_subcommand is None:
        _status(url, admin_key)


@accounts_app.command("status")
def status(url: str = URL_OPTION, admin_key: str | None = ADMIN_OPTION) -> None:
    """Show each upstream account's health from a running server."""
    _status(url, admin_key)


def _status(url: str, admin_key: str | None) -> None:
    import httpx

    headers = {"authorization": f"Bearer {admin_key}"} if admin_key else {}
    try:
        r = httpx.get(url.rstrip("/") + "/admin/accounts", headers=headers, timeout=10)
        data = r.json()
    except (httpx.HTTPError, ValueError) as exc:
        console.print(f"[red]cannot reach {url}:[/red] {exc}")
        raise typer.Exit(1) from None
    if r.status_code != 200:
        err = data.get("error") if isinstance(data, dict) else None
        msg = err.get("message") if isinstance(err, dict) else r.reason_phrase
        console.print(f"[red]{url} refused ({r.status_code}):[/red] {msg}")
        raise typer.Exit(1)
    t = Table("provider", "account", "state", "until", "reason", "in flight", "recent errors")
    for a in data.get("accounts", []):
        until = a.get("until")
        left = f"{max(0.0, until - time.time()):.1f}s" if until else "-"
        t.add_row(
            str(a.get("provider")),
            str(a.get("account")),
            str(a.get("state")),
            left,
            str(a.get("reason") or "-"),
            str(a.get("in_flight", 0)),
            "; ".join(
                e.get("message", "") if isinstance(e, dict) else str(e) for e in a.get("recent_errors") or []
            )[:80],
        )
    Console().print(t)


def _read_key(key_env: str | None, key_stdin: bool) -> str:
    if key_env and key_stdin:
        fail("--key-env and --key-stdin are alternatives: give one")
    if key_env:
        value = os.environ.get(key_env)
        if not value:
            fail(f"environment variable {key_env} is not set")
        return value
    if key_stdin:
        return sys.stdin.readline().strip()
    if not sys.stdin.isatty():
        fail("no terminal to prompt for the API key: use --key-env VAR or --key-stdin")
    return str(typer.prompt("API key", hide_input=True))


@accounts_app.command("add")
def add_cmd(
    provider: str = typer.Option(..., "--provider", help="a configured provider's name"),
    name: str = typer.Option(..., "--name", help="how logs, metrics and the ledger name the account"),
    rpm: int | None = typer.Option(None, "--rpm", help="requests per minute"),
    tpm: int | None = typer.Option(None, "--tpm", help="tokens per minute"),
    max_concurrency: int | None = typer.Option(None, "--max-concurrency", help="requests at once"),
    weight: float = typer.Option(1.0, "--weight", help="share for the weighted strategy"),
    key_env: str | None = typer.Option(None, "--key-env", help="read the API key from this variable"),
    key_stdin: bool = typer.Option(False, "--key-stdin", help="read the API key from standard input"),
    config: Path = typer.Option(..., "--config", "-c", help="the gateway's YAML config"),
) -> None:
    """Add a provider account; its API key is stored encrypted under the master key."""
    cfg = load(config)
    key = _read_key(key_env, key_stdin)

    async def work(store: Store) -> AccountRow:
        keyring = load_keyring(cfg.data_path, create=True)
        row = await add(store, keyring, cfg, provider, name, key, Limits(rpm, tpm, max_concurrency, weight))
        await audit(store, "account.add", f"{row.provider}/{row.name}", id=row.id)
        return row

    row = with_store(cfg, work)
    console.print(f"[green]added[/green] {row.provider}/{row.name} ({row.id}); running gateways pick it up")


@accounts_app.command("list")
def list_cmd(config: Path | None = CONFIG_OPTION) -> None:
    """The accounts added at run time (never their keys)."""
    rows = with_store(load(config), lambda store: store.accounts())
    t = Table("provider", "name", "id", "enabled", "rpm", "tpm", "max conc.", "weight", "added")
    for r in rows:
        t.add_row(
            r.provider,
            r.name,
            r.id,
            "yes" if r.enabled else "no",
            *(str(v) if v is not None else "-" for v in (r.rpm, r.tpm, r.max_concurrency)),
            f"{r.weight:g}",
            datetime.fromtimestamp(r.created, UTC).strftime("%Y-%m-%d %H:%M"),
        )
    Console().print(t)


def _change(config: Path | None, name: str, provider: str | None, action: str) -> None:
    async def work(store: Store) -> AccountRow:
        rows = [r for r in await store.accounts() if r.name == name and provider in (None, r.provider)]
        if not rows:
            raise AccountInputError(
                f"no stored account named '{name}'"
                + (f" in provider '{provider}'" if provider else "")
                + " (a config account is enabled or disabled through a running server's admin API)"
            )
        if len(rows) > 1:
            raise AccountInputError(f"several providers have an account named '{name}': add --provider")
        row = rows[0]
        if action == "remove":
            await store.delete_account(row.id)
        else:
            await store.update_account(msgspec.structs.replace(row, enabled=action == "enable"))
        await audit(store, f"account.{action}", f"{row.provider}/{row.name}")
        return row

    row = with_store(load(config), work)
    console.print(f"[green]{action}d[/green] {row.provider}/{row.name}")


PROVIDER_OPTION = typer.Option(None, "--provider", help="when several providers have an account of that name")


@accounts_app.command("enable")
def enable_cmd(
    name: str = typer.Argument(...),
    provider: str | None = PROVIDER_OPTION,
    config: Path | None = CONFIG_OPTION,
) -> None:
    """Enable a stored account."""
    _change(config, name, provider, "enable")


@accounts_app.command("disable")
def disable_cmd(
    name: str = typer.Argument(...),
    provider: str | None = PROVIDER_OPTION,
    config: Path | None = CONFIG_OPTION,
) -> None:
    """Disable a stored account."""
    _change(config, name, provider, "disable")


@accounts_app.command("remove")
def remove_cmd(
    name: str = typer.Argument(...),
    provider: str | None = PROVIDER_OPTION,
    config: Path | None = CONFIG_OPTION,
) -> None:
    """Remove a stored account."""
    _change(config, name, provider, "remove")
