"""A private, real PostgreSQL for tests and bench/store.py: `initdb` into a temp dir, `postgres` on 127.0.0.1 on a
free port (its unix socket in the temp dir too), trust auth for one role, stopped and deleted at the end.

initdb refuses to run as root: as root, the cluster belongs to the `postgres` user (Debian's package creates
it; else `nobody`) and both binaries run as that user; as anyone else, as themselves.
"""

from __future__ import annotations

import asyncio
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import asyncpg

ROOT = Path(__file__).resolve().parents[1]
ROLE = "smolgate"


def _bin(name: str) -> str:
    """A PostgreSQL server binary: Debian keeps them in /usr/lib/postgresql/<ver>/bin (newest wins), off PATH."""
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), key=lambda p: int(p.split("/")[4]))
    if found:
        return found[-1]
    on_path = shutil.which(name)
    if on_path:
        return on_path
    raise RuntimeError(f"no PostgreSQL `{name}` binary: run scripts/ensure_postgres.sh")


def ensure_binaries() -> None:
    try:
        _bin("initdb"), _bin("postgres")
    except RuntimeError:
        subprocess.run(["sh", str(ROOT / "scripts" / "ensure_postgres.sh")], check=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _as_user() -> dict[str, Any]:
    """Popen arguments that drop root to an unprivileged user (initdb and postgres refuse to run as root)."""
    if os.getuid() != 0:
        return {}
    for name in ("postgres", "nobody"):
        try:
            pw = pwd.getpwnam(name)
        except KeyError:
            continue
        return {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": []}
    raise RuntimeError("running as root with no unprivileged user (postgres or nobody) for PostgreSQL")


class PostgresServer:
    def __init__(self, durable: bool = False) -> None:
        self.durable = durable  # fsync on (benchmarks); tests run without it, for speed
        self.port = _free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="smolgate-pg-"))  # not under pytest's 0700 root-owned dirs
        self.proc: subprocess.Popen[bytes] | None = None

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{ROLE}@127.0.0.1:{self.port}/{database}"

    def start(self) -> PostgresServer:
        ensure_binaries()
        user = _as_user()
        if user:
            os.chown(self.dir, user["user"], user["group"])
        data = self.dir / "data"
        subprocess.run(
            [_bin("initdb"), "-D", str(data), "-U", ROLE, "-A", "trust", "-E", "UTF8", "--no-sync"],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            cwd=self.dir,
            **user,
        )
        return self.resume()

    def resume(self) -> PostgresServer:
        """Start the server on its data dir (again, after `halt()`: same port, same data)."""
        settings = ["listen_addresses=127.0.0.1", f"port={self.port}", f"unix_socket_directories={self.dir}"]
        if not self.durable:
            settings += ["fsync=off", "synchronous_commit=off", "full_page_writes=off"]
        cmd = [_bin("postgres"), "-D", str(self.dir / "data")]
        for s in settings:
            cmd += ["-c", s]
        with open(self.dir / "postgres.log", "ab") as log:  # the child keeps its own descriptor
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=log, cwd=self.dir, **_as_user())
        end = time.monotonic() + 30
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise RuntimeError(f"postgres exited: {(self.dir / 'postgres.log').read_text()[-2000:]}")
            try:
                self._run(self._sql("SELECT 1"))
                return self
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                time.sleep(0.05)
        raise RuntimeError(f"postgres did not come up on port {self.port}")

    @staticmethod
    def _run(coro: Coroutine[Any, Any, None]) -> None:
        """Run a coroutine to the end from sync code, even when called inside a running event loop (async tests)."""
        with ThreadPoolExecutor(1) as pool:
            pool.submit(asyncio.run, coro).result()

    async def _sql(self, sql: str) -> None:
        conn = await asyncpg.connect(self.url(), timeout=5)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    def create_database(self) -> str:
        """A fresh, empty database; its URL."""
        name = "t_" + uuid.uuid4().hex[:12]
        self._run(self._sql(f"CREATE DATABASE {name}"))
        return self.url(name)

    def stop(self) -> None:
        self.halt()
        shutil.rmtree(self.dir, ignore_errors=True)

    def halt(self) -> None:
        """Stop the server, keeping its data (a database outage)."""
        if self.proc is not None:
            self.proc.send_signal(signal.SIGINT)  # "fast" shutdown (SIGTERM's "smart" one waits for clients)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None

    def __enter__(self) -> PostgresServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
