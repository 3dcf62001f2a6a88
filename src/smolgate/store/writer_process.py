"""The SQLite ledger's writes in a process of their own, beside the gateway's event loop.

Taming the rows, folding the rollups and SQLite's own work (an insert with its indexes, three upserts) cost more
than building the rows; in a child process they leave the gateway's core (on a multi-core host the writer runs
beside it). The gateway sends each flush's rows as one msgpack-encoded frame through the child's stdin; the child
owns its SQLite connection, writes the batch in one transaction exactly as `SqlStore.add_usage` would
(`sql.usage_steps`), and answers one frame on stdout: ok, rejected (a value the database refused) or error.

Durability: the child ignores SIGINT and SIGTERM (a Ctrl-C or a service manager signals the whole group, and the
gateway's shutdown flush still needs the child) and exits when its stdin closes — after writing every batch it
received, so a gateway killed with -9 still gets what it had sent. A child that dies is started again for the
next batch (the batch it held is retried: if it had committed just before dying, those rows are written twice).

    python -m smolgate.store.writer_process /path/to/smolgate.db      (started by the ledger, never by hand)
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sqlite3
import sys
from pathlib import Path

import msgspec

from .base import Rejected, StoreError
from .records import UsageRow
from .sqlite import _REFUSED, BUSY_TIMEOUT_MS
from .usage_sql import tame, usage_steps

log = logging.getLogger("smolgate.ledger")

REPLY_TIMEOUT = 120.0  # seconds for one batch: SQLite's busy timeout, a 5,000-row transaction, a loaded host
_encode = msgspec.msgpack.Encoder().encode
_reply = msgspec.msgpack.Decoder(tuple[str, str]).decode
_SRC = str(Path(__file__).resolve().parents[2])  # the directory holding the smolgate package


def _encoded(rows: list[UsageRow]) -> bytes:
    """The batch as msgpack. Rows are tamed in the child; only numbers too large for msgpack (an upstream's
    nonsense token count) are tamed here first, and a value still too large (no column takes it) is refused."""
    try:
        return _encode(rows)
    except OverflowError:
        pass
    try:
        return _encode([tame(r) for r in rows])
    except OverflowError as exc:
        raise Rejected(str(exc)) from None


def _frame(data: bytes) -> bytes:
    return len(data).to_bytes(4, "big") + data


class WriterProcess:
    """The gateway's side: `add_usage` as `Store.add_usage` (one transaction; Rejected for refused values, any
    other error for a write that did not happen), each call one round trip to the child."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._proc: asyncio.subprocess.Process | None = None
        self._lock = asyncio.Lock()
        self.started = 0  # how many children were started (1 unless one died)

    async def start(self) -> asyncio.subprocess.Process:
        if self._proc is not None and self._proc.returncode is None:
            return self._proc
        if self._proc is not None:
            log.warning(
                "usage ledger: the writer process exited (code %s): starting another", self._proc.returncode
            )
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(filter(None, (_SRC, os.environ.get("PYTHONPATH")))),
        }
        proc = self._proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "smolgate.store.writer_process", self.path,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, env=env,
        )  # fmt: skip
        self.started += 1
        await self._answer(proc)  # ready: its signals ignored, its connection open
        return proc

    async def _answer(self, proc: asyncio.subprocess.Process) -> None:
        """The child's next reply frame: ok, or Rejected / StoreError; a child gone is killed and a StoreError."""
        assert proc.stdout is not None
        try:
            async with asyncio.timeout(REPLY_TIMEOUT):
                head = await proc.stdout.readexactly(4)
                body = await proc.stdout.readexactly(int.from_bytes(head, "big"))
        except (OSError, asyncio.IncompleteReadError, TimeoutError) as exc:
            await self._kill()
            raise StoreError(f"the usage writer process stopped: {type(exc).__name__}") from None
        status, text = _reply(body)
        if status == "rejected":
            raise Rejected(text)
        if status != "ok":
            raise StoreError(text)

    async def add_usage(self, rows: list[UsageRow]) -> None:
        if not rows:
            return
        data = _encoded(rows)
        async with self._lock:
            proc = await self.start()
            assert proc.stdin is not None
            try:
                proc.stdin.write(_frame(data))
                async with asyncio.timeout(REPLY_TIMEOUT):
                    await proc.stdin.drain()
            except (OSError, TimeoutError) as exc:
                await self._kill()
                raise StoreError(f"the usage writer process stopped: {type(exc).__name__}") from None
            await self._answer(proc)

    async def close(self) -> None:
        """Close the child's stdin: it writes what it has and exits."""
        proc, self._proc = self._proc, None
        if proc is None or proc.returncode is not None:
            return
        assert proc.stdin is not None
        proc.stdin.close()
        try:
            async with asyncio.timeout(REPLY_TIMEOUT):
                await proc.wait()
        except TimeoutError:
            proc.kill()
            await proc.wait()

    async def _kill(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.returncode is None:
            proc.kill()
            await proc.wait()
        self._proc = proc  # its exit code, for start()'s message


# -------------------------------------------------------------------- the child


def _write(db: sqlite3.Connection, rows: list[UsageRow]) -> tuple[str, str]:
    try:
        db.execute("BEGIN IMMEDIATE")
        try:
            for sql, values in usage_steps(rows):
                db.executemany(sql, values)
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
    except _REFUSED as exc:
        return "rejected", str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    except sqlite3.Error as exc:
        return "error", f"cannot write to the SQLite store: {exc}"
    return "ok", ""


def main(path: str) -> None:
    # Only stdin, stdout and stderr are ours. uvloop's spawn keeps descriptors its loop duplicated without
    # close-on-exec, such as the gateway's listening socket: held here, the port would keep accepting
    # connections nobody answers after the gateway stopped listening (a reset instead of a refusal).
    os.closerange(3, os.sysconf("SC_OPEN_MAX"))
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    out = os.fdopen(os.dup(1), "wb")  # the replies; anything else printed goes to stderr
    os.dup2(2, 1)
    inp = sys.stdin.buffer
    decode = msgspec.msgpack.Decoder(list[UsageRow]).decode
    try:
        db = sqlite3.connect(path, isolation_level=None)
        db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        db.execute(
            "PRAGMA synchronous = NORMAL"
        )  # durable across a killed process, as the gateway's connection
    except sqlite3.Error as exc:
        out.write(_frame(_encode(("error", f"cannot open the SQLite store: {exc}"))))
        out.flush()
        return
    out.write(_frame(_encode(("ok", "ready"))))
    out.flush()
    while True:
        head = inp.read(4)
        body = inp.read(int.from_bytes(head, "big")) if len(head) == 4 else b""
        if len(head) < 4 or len(body) < int.from_bytes(head, "big"):
            break  # stdin closed: the gateway stopped (or died); every batch it sent is written
        out.write(_frame(_encode(_write(db, decode(body)))))
        out.flush()
    db.close()


if __name__ == "__main__":
    main(sys.argv[1])
