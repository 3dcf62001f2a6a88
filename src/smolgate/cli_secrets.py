"""`smolgate secrets rotate-master`: a new master key, every stored account key re-encrypted under it.

Order, so that a crash at any point loses nothing: every key is decrypted first (a wrong key stops here,
nothing changed); the old key file is kept as `master.key.old`; the new key file is written (atomically);
every row is re-encrypted in one transaction; only then is `master.key.old` removed. Until then both keys
decrypt (crypto.Keyring), and running the command again finishes the job.

With `$SMOLGATE_MASTER_KEY` there is no file to write: give the new key with `--new-key-env VAR`, then set
`SMOLGATE_MASTER_KEY` to it (and, while replicas still run with the old one, `SMOLGATE_MASTER_KEY_OLD`).
"""

from __future__ import annotations

import os
from pathlib import Path

import msgspec
import typer
from rich.console import Console

from .cli_checks import fail
from .cli_store import CONFIG_OPTION, audit, load, with_store
from .crypto import ENV, KEY_FILE, OLD_SUFFIX, Keyring, MasterKey, key_path, load_keyring, write_key_file
from .store import Store

secrets_app = typer.Typer(no_args_is_help=True, help="The master key that encrypts provider account keys.")
console = Console(stderr=True)


async def reencrypt(store: Store, keyring: Keyring, new: MasterKey) -> int:
    """Every stored account key decrypted with `keyring`, written back under `new`, in one transaction."""
    rows = await store.accounts()
    plain = [(r, keyring.decrypt(r.key_ciphertext, r.id)) for r in rows]
    await store.update_accounts(
        [msgspec.structs.replace(r, key_ciphertext=new.encrypt(k, r.id)) for r, k in plain]
    )
    return len(rows)


@secrets_app.command("rotate-master")
def rotate_master(
    new_key_env: str | None = typer.Option(
        None,
        "--new-key-env",
        help="take the new key (base64url of 32 bytes) from this variable; else generate",
    ),
    config: Path | None = CONFIG_OPTION,
) -> None:
    """Replace the master key and re-encrypt every stored account key under the new one."""
    cfg = load(config)
    env_mode = bool(os.environ.get(ENV))
    if env_mode and not new_key_env:
        fail(f"the master key comes from ${ENV}: pass --new-key-env VAR with the new key")
    path = key_path(cfg.data_path)
    old_path = path.with_name(KEY_FILE + OLD_SUFFIX)

    async def work(store: Store) -> tuple[Keyring, MasterKey, int]:
        keyring = load_keyring(cfg.data_path, create=not env_mode)
        if new_key_env:
            text = os.environ.get(new_key_env, "")
            if not text:
                fail(f"environment variable {new_key_env} is not set")
            new = MasterKey.from_text(text, f"${new_key_env}")
        else:
            new, text = MasterKey.generate()
        if not env_mode and old_path.exists():  # a rotation that did not finish: finish it first
            await reencrypt(store, keyring, keyring.current)
            old_path.unlink()
        if not env_mode:
            write_key_file(old_path, path.read_text().strip())
            write_key_file(path, text)
        n = await reencrypt(store, keyring, new)
        old_path.unlink(missing_ok=True)
        await audit(
            store, "secrets.rotate_master", None, old_key=keyring.current.id, new_key=new.id, accounts=n
        )
        return keyring, new, n

    keyring, new, n = with_store(cfg, work)
    console.print(
        f"[green]rotated[/green]: master key {keyring.current.id} → {new.id}; {n} account keys re-encrypted"
    )
    if env_mode:
        console.print(f"now set {ENV} to the new key wherever the gateway runs, and restart it")
    else:
        console.print(f"new key file: {path} (running gateways use it for new accounts at once)")
