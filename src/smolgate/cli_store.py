"""What the state-managing CLI commands share: the config (or the defaults), the store it names, opened for
one command, and the audit rows they write (actor "cli", source "local"). A failure is one line, exit 2."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import typer

from .cli_checks import fail
from .config import Config, ConfigError, load_config
from .crypto import MasterKeyError
from .store import AuditRow, Store

T = TypeVar("T")

CONFIG_OPTION = typer.Option(None, "--config", "-c", help="the gateway's YAML config (store, data_dir)")


def load(config: Path | None) -> Config:
    try:
        return load_config(config) if config is not None else Config()
    except ConfigError as exc:
        fail(f"config error: {exc}")


def with_store(cfg: Config, work: Callable[[Store], Awaitable[T]]) -> T:
    """Run `work` against the config's store (opened and closed around it)."""

    from .store.base import StoreError
    from .store.open import open_store

    async def run() -> T:
        store = await open_store(cfg)
        try:
            return await work(store)
        finally:
            await store.close()

    try:
        return asyncio.run(run())
    # messages for people, no key, no trace; ValueError: an invalid field (AccountInputError, InvalidKeyField)
    except (StoreError, MasterKeyError, ValueError) as exc:
        fail(str(exc))


async def audit(
    store: Store, action: str, target: str | None, **detail: str | int | float | bool | None
) -> None:
    await store.audit(
        AuditRow(ts=time.time(), actor="cli", action=action, target=target, source="local", detail=detail)
    )
