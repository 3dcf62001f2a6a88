"""`open_store(cfg)`: the store the config names, opened (connected, migrated) — or one clear line saying why not."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote, urlsplit

from ..config import Config
from ..secret import redact_url
from .base import Store, StoreError

DEFAULT_FILE = "smolgate.db"


def make_store(cfg: Config) -> Store:
    """The store for `cfg.store` (None: a SQLite file in the data dir), not yet opened."""
    if cfg.store is None:
        from .sqlite import SqliteStore

        return SqliteStore((cfg.data_path / DEFAULT_FILE).absolute())
    url = cfg.store.reveal()
    scheme = url.split(":", 1)[0].lower() if ":" in url else ""
    if scheme == "sqlite":
        from .sqlite import SqliteStore

        path = unquote(urlsplit(url).path)
        if path in ("/:memory:", ":memory:"):
            return SqliteStore(":memory:")
        if not path.startswith("/") or path == "/":
            raise StoreError(
                f"store {redact_url(url)}: want sqlite:///absolute/path.db or sqlite:///:memory:"
            )
        return SqliteStore(Path(path))
    if scheme in ("postgresql", "postgres"):
        from .postgres import PostgresStore

        return PostgresStore(url)
    shown = f" {scheme!r}" if re.fullmatch(r"[a-z][a-z0-9+.-]{0,19}", scheme) else ""  # never echo a secret
    raise StoreError(f"store {redact_url(url)}: unknown scheme{shown}; use sqlite:///path or postgresql://…")


async def open_store(cfg: Config) -> Store:
    store = make_store(cfg)
    await store.open()
    return store
