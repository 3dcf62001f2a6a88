"""The process's one compute thread: every loaded model's scheduler steps on it, in turn.

torch's CPU builds run parallel ops on GNU OpenMP, which gives each thread that runs one its own team of worker
threads, kept while that thread lives. Once a process holds more OpenMP threads than CPUs, libgomp stops letting
idle workers spin and puts them to sleep after every parallel region (its "throttled" spin), and each of the
hundreds of regions in a decode step then waits for its workers to wake. Measured (docs/performance.md), with a
second model loaded and idle, each with its own decode thread, the packaged model decoded at ~45 tok/s instead of
~105. So the models of one process (a gateway serving SmolLM2 and a SmolVLM2) share one thread: each pass steps
every scheduler that has work once, so they interleave one step (a decode step, or a prompt chunk) at a time.

The thread starts with the first model that needs it and ends when no model is left, so a process that has
closed its engines keeps no thread (nor its OpenMP team).
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable
from typing import Protocol

log = logging.getLogger(__name__)

LOCK = threading.Lock()  # the schedulers' own lock too: one wake-up condition for all of them
WAKE = threading.Condition(LOCK)
THREAD_NAME = "smolgate-decode"


class Member(Protocol):
    """What the compute thread needs of a scheduler. `busy` and `closed` are read, `idle` called, under LOCK."""

    @property
    def busy(self) -> bool: ...

    @property
    def closed(self) -> bool: ...

    def idle(self) -> None: ...  # nothing to do for now: hand memory back

    def step(self) -> None: ...

    def fail(self, exc: BaseException) -> None: ...  # a step raised: fail what it holds, keep the member

    def finish(self) -> None: ...  # closed: fail what is left; the thread is done with it


_members: list[Member] = []
_stopped: dict[int, threading.Event] = {}  # id(member) -> set once the thread let it go
_thread: threading.Thread | None = None


def join(member: Member) -> None:
    """Have the compute thread step `member` from now on (idempotent), starting the thread if none runs."""
    global _thread
    with LOCK:
        if member.closed:
            return
        if all(m is not member for m in _members):
            _members.append(member)
            _stopped[id(member)] = threading.Event()
        if _thread is None:
            _thread = threading.Thread(target=_loop, name=THREAD_NAME, daemon=True)
            _thread.start()
        WAKE.notify_all()


def leave(member: Member) -> None:
    """After `member.closed` became true: wait until the compute thread has finished it (at once when called on
    the compute thread itself, or for a member that never joined)."""
    with LOCK:
        stopped = _stopped.get(id(member))
        WAKE.notify_all()
    if stopped is not None and not on_compute_thread():
        stopped.wait()


def on_compute_thread() -> bool:
    return threading.current_thread() is _thread


def _loop() -> None:
    global _thread
    while True:
        with LOCK:
            while True:
                if not _members:
                    _thread = None  # under LOCK: a `join` from now on starts a new thread
                    return
                for m in _members:
                    if not m.busy:
                        m.idle()
                ready = [m for m in _members if m.closed or m.busy]
                if ready:
                    break
                WAKE.wait()
            done = [m for m in ready if m.closed]
            for m in done:
                _members.remove(m)
        for m in ready:
            if m in done:
                _guarded(m.finish)
                with LOCK:
                    _stopped.pop(id(m)).set()
                continue
            try:
                m.step()
            except Exception as exc:  # a failed forward fails that model's requests, not the thread
                _guarded(functools.partial(m.fail, exc))


def _guarded(fn: Callable[[], None]) -> None:
    """Failing requests calls their sinks; one that raises (its event loop closed) must not end the thread that
    every other model steps on."""
    try:
        fn()
    except Exception:
        log.exception("local model: failing the requests of a closed or failed step raised")
