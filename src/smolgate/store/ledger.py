"""`LedgerWriter`: the usage ledger's write-behind buffer, an `Observer` of every finished request.

`finished()` runs on the request's path, so it only builds a row and appends it to a bounded deque; a background
task writes the buffer in batches every `flush_interval` seconds (one transaction per batch: raw rows plus their
rollups). A database that is down keeps rows in the buffer (still bounded) and is retried each tick, logged once
per outage. `stop()` writes everything left, so SIGTERM loses nothing; `kill -9` loses at most one interval.
The same task prunes old rows hourly (retention).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable

from ..config import LedgerConfig
from ..telemetry import RequestRecord
from .base import Rejected, Store
from .records import UsageRow

log = logging.getLogger("smolgate.ledger")

BATCH = 5_000  # rows per transaction
PRUNE_EVERY = 3600.0  # seconds between retention passes
WARN_EVERY = 60.0  # at most one "buffer full" warning a minute


class _Partial(Exception):
    """A connection error after the first `done` rows of a batch were written."""

    def __init__(self, done: int) -> None:
        self.done = done


def zero_cost(rec: RequestRecord) -> float:
    return 0.0


def usage_row(rec: RequestRecord, cost: float) -> UsageRow:
    """The ledger row for a finished model call: the last attempt names who answered (or was last tried)."""
    last, u = rec.last, rec.usage
    return UsageRow(
        ts=rec.ts,
        request_id=rec.request_id,
        key_id=rec.key_id,
        client_protocol=rec.client_protocol or "",
        alias=rec.alias,
        provider=last.provider if last else None,
        account=last.account if last else None,
        upstream_model=last.upstream_model if last else None,
        upstream_protocol=last.upstream_protocol if last else None,
        input_tokens=u.input_tokens if u else 0,
        cached_tokens=u.cached_tokens if u else 0,
        cache_write_tokens=u.cache_creation_tokens if u else 0,
        output_tokens=u.output_tokens if u else 0,
        reasoning_tokens=u.reasoning_tokens if u else 0,
        cost_usd=cost,
        latency_ms=rec.latency_ms,
        ttft_ms=rec.ttft_ms,
        status=rec.status,
        error_kind=rec.error_kind,
        stream=rec.stream,
        local=last is not None and last.upstream_protocol == "local",
        attempts=len(rec.attempts),
        served_by=rec.served_by,
        privacy=rec.privacy,
        vision_images=rec.vision_images,
    )


class LedgerWriter:
    def __init__(
        self, store: Store, cfg: LedgerConfig, cost: Callable[[RequestRecord], float] = zero_cost
    ) -> None:
        self.store = store
        self.cfg = cfg
        self.cost = cost
        self.buffer: deque[UsageRow] = deque()
        self.dropped = 0  # rows lost to a full buffer (a metric)
        self.rejected = 0  # rows the database refused (a metric)
        self.written = 0
        self.on_written: list[Callable[[list[UsageRow]], None]] = []  # told of each batch now in the store
        self._warned = self._refused_logged = -WARN_EVERY
        self._failing = False
        self._task: asyncio.Task[None] | None = None
        self._next_prune = 0.0
        self._stopping = asyncio.Event()

    # ---------------------------------------------------------------- the request path
    def finished(self, rec: RequestRecord) -> None:
        if not rec.generation:
            return
        try:
            cost = self.cost(rec)
        except Exception:  # a price lookup must never fail a request or lose its row
            log.exception("cost of request %s", rec.request_id)
            cost = 0.0
        self._append(usage_row(rec, cost))

    def _append(self, row: UsageRow) -> None:
        if len(self.buffer) >= self.cfg.max_buffer:
            self._drop(1)
            return
        self.buffer.append(row)

    def _drop(self, n: int) -> None:
        self.dropped += n
        now = time.monotonic()
        if now - self._warned >= WARN_EVERY:
            self._warned = now
            log.warning(
                "usage ledger buffer full (%d rows): dropped %d rows so far (store %s)",
                self.cfg.max_buffer,
                self.dropped,
                self.store.url_display,
            )

    # ---------------------------------------------------------------- the background task
    def start(self) -> None:
        if self._task is None:
            self._stopping.clear()
            self._task = asyncio.get_running_loop().create_task(self._run(), name="ledger-writer")

    async def stop(self) -> None:
        """End the task (after the batch it may be writing), then write everything buffered; a failure is
        logged with the count lost. Not a cancel: a write cancelled mid-flight may still commit."""
        if self._task is not None:
            self._stopping.set()
            await self._task
            self._task = None
        while self.buffer:
            if not await self.flush():
                log.error(
                    "usage ledger: %d rows not written at shutdown (store unavailable)", len(self.buffer)
                )
                return

    async def _run(self) -> None:
        while not self._stopping.is_set():
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.cfg.flush_interval)
            while self.buffer and await self.flush() and len(self.buffer) >= BATCH:
                pass  # a backlog (after an outage): write it in back-to-back batches
            if time.monotonic() >= self._next_prune and not self._stopping.is_set():
                self._next_prune = time.monotonic() + PRUNE_EVERY
                await self.prune()

    async def flush(self) -> bool:
        """Write one batch; on failure put the unwritten rows back (bounded) for the next tick. True when the
        batch is done with (written, or its refused rows set aside)."""
        n = min(len(self.buffer), BATCH)
        batch = [self.buffer.popleft() for _ in range(n)]
        done = 0
        try:
            done = await self._write(batch)
        except _Partial as partial:
            done, exc = partial.done, partial.__cause__
            if not self._failing:
                self._failing = True
                log.error(
                    "usage ledger: cannot write to the store %s (will retry): %s", self.store.url_display, exc
                )
            rest = batch[done:]
            room = self.cfg.max_buffer - len(self.buffer)
            if room < len(rest):  # keep the oldest rows: newer ones are counted as dropped
                self._drop(len(rest) - max(room, 0))
                rest = rest[: max(room, 0)]
            self.buffer.extendleft(reversed(rest))
            return False
        if self._failing:
            self._failing = False
            log.warning("usage ledger: the store %s is writable again", self.store.url_display)
        for hook in self.on_written:  # (key budgets: this spend is in the store now, no longer pending)
            try:
                hook(batch)
            except Exception:
                log.exception("usage ledger: a written-rows hook failed")
        return True

    async def _write(self, batch: list[UsageRow]) -> int:
        """Write the batch; when the database refuses a value, halve until the refused rows are found and set
        aside (one bad row must not keep its batch failing forever). Returns how many leading rows are done
        (written or set aside) — all of them, unless a connection error is raised part-way."""
        done, pending = 0, [(0, len(batch))]
        while pending:
            lo, hi = pending.pop()
            try:
                await self.store.add_usage(batch[lo:hi])
                self.written += hi - lo
            except Rejected as exc:
                if hi - lo > 1:
                    mid = (lo + hi) // 2
                    pending += [(mid, hi), (lo, mid)]  # the first half next: `done` stays a prefix
                    continue
                self.rejected += 1
                if time.monotonic() - self._refused_logged >= WARN_EVERY:
                    self._refused_logged = time.monotonic()
                    log.error(
                        "usage ledger: the store refused the row of request %s (%d refused so far): %s",
                        batch[lo].request_id,
                        self.rejected,
                        exc,
                    )
            except Exception as exc:
                raise _Partial(done) from exc
            done = hi
        return done

    async def prune(self) -> int:
        """Delete rows past retention (0 days keeps them). Failures are logged; the next pass retries."""
        now, day = time.time(), 86400.0
        raw = now - self.cfg.retention_days * day if self.cfg.retention_days > 0 else 0.0
        rollups = now - self.cfg.rollup_retention_days * day if self.cfg.rollup_retention_days > 0 else 0.0
        if raw <= 0 and rollups <= 0:
            return 0
        try:
            n = await self.store.prune(raw, rollups)
        except Exception as exc:
            log.warning("usage ledger: retention prune failed (will retry): %s", exc)
            return 0
        if n:
            log.info("usage ledger: pruned %d rows older than %g days", n, self.cfg.retention_days)
        return n
