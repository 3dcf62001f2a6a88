"""Graceful shutdown's bookkeeping: the requests in flight, so the ones still running when the grace period
is over can be ended properly — a stream with its protocol's in-stream error event, an unanswered request with
a 503 — instead of a cut connection.

Ending a request is a task cancellation marked by `ending`: the stream encoder (streaming.py) and the app
(app.py) catch it, take the cancellation back (`uncancel`) and answer. Tracking costs a set add and discard per
request; nothing watches anything while the server runs.
"""

from __future__ import annotations

import asyncio
import logging

log = logging.getLogger("smolgate")


class Drain:
    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[object]] = set()
        self.stopping = False  # shutdown began: /ready answers 503 so load balancers move on
        self.ending = False  # the grace period is over: in-flight requests are being ended

    def track(self) -> asyncio.Task[object] | None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        return task

    def untrack(self, task: asyncio.Task[object] | None) -> None:
        if task is not None:
            self._tasks.discard(task)

    def begin(self) -> None:
        self.stopping = True
        if self._tasks:
            log.info("shutting down: waiting for %d request(s) in flight", len(self._tasks))

    def end(self) -> None:
        """The grace period is over: end every request still running."""
        self.ending = True
        if self._tasks:
            log.warning("shutdown grace period over: ending %d request(s) still in flight", len(self._tasks))
        for task in list(self._tasks):
            task.cancel("smolgate shutdown")

    def claims(self, task: asyncio.Task[object] | None) -> bool:
        """Whether a cancellation just caught in `task` is the drain's ending it (then taken back, so the
        handler can still answer); False for any other cancellation (a client gone, a hard stop)."""
        if not self.ending or task is None or task not in self._tasks:
            return False
        task.uncancel()
        self._tasks.discard(task)  # ended once: a later (hard) cancellation is not ours
        return True
