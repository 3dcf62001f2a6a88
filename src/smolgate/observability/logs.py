"""Log records as text or JSON lines, each carrying the id of the request it was logged for, written by a
thread of their own.

The request id lives in a context variable the server sets as a request arrives (every request runs in its own
task, so its logs — the dispatcher's retries, the access line — carry its id without passing it around).

Writing happens off the event loop: a record is queued (bounded) and a listener thread writes it. With a line
per request, a stderr that is not read fast enough (a full pipe, a stalled log shipper) would otherwise block
the whole server in `write`; now it costs dropped lines, counted, instead.
"""

from __future__ import annotations

import atexit
import contextlib
import contextvars
import logging
import queue
import threading
import time
from collections.abc import Callable
from logging.handlers import QueueHandler, QueueListener
from typing import Any

import orjson

request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("smolgate_request_id", default=None)

ACCESS_LOGGER = "smolgate.access"
QUEUE_SIZE = 10_000  # records waiting for the writer thread; past it, new ones are dropped (and counted)
EXIT_WAIT = 5.0  # seconds the process waits at exit for queued lines to be written


class RequestIdFilter(logging.Filter):
    """Stamps each record with the current request's id (None outside a request)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = request_id.get()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request_id, plus a record's `fields` (the
    access log's). Run after the redacting filter, so `message` is already scrubbed."""

    def format(self, record: logging.LogRecord) -> str:
        t = record.created
        out: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1000):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        rid = getattr(record, "request_id", None) or request_id.get()
        if rid is not None:
            out["request_id"] = rid
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            out.update(fields)
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            out["exception"] = record.exc_text
        return orjson.dumps(out, default=str).decode()


def json_handler(stream: Any = None) -> logging.Handler:
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RequestIdFilter())
    return handler


def plain_handler(stream: Any = None) -> logging.Handler:
    """Text lines for the busy access logger (`[12:00:00] INFO     message`, like the rest of the text log)."""
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("[%(asctime)s] %(levelname)-8s %(message)s", datefmt="%X"))
    return handler


class DroppingQueueHandler(QueueHandler):
    """Queues records for the writer thread and never waits: when the queue is full the record is dropped."""

    def __init__(self, q: queue.Queue[logging.LogRecord]) -> None:
        super().__init__(q)
        self.dropped = 0

    def enqueue(self, record: logging.LogRecord) -> None:
        try:
            self.queue.put_nowait(record)
        except queue.Full:
            self.dropped += 1


def _only(access: bool) -> Callable[[logging.LogRecord], bool]:
    return lambda r: (r.name == ACCESS_LOGGER) == access


def _stop(listener: QueueListener) -> None:
    """At exit: write what is queued, but don't hang on a stderr that nobody reads (the thread is a daemon)."""
    with contextlib.suppress(queue.Full):
        listener.enqueue_sentinel()
    thread: threading.Thread | None = getattr(listener, "_thread", None)
    if thread is not None:
        thread.join(EXIT_WAIT)


def setup(level: str, fmt: str, text_handler: logging.Handler, stream: Any) -> list[logging.Handler]:
    """Route every record through a bounded queue to a writer thread: JSON lines (`fmt` "json"), or
    `text_handler` for everything but the access lines, which take the cheap `plain_handler` (rich renders a
    line in ~1 ms). Returns the writing handlers (for filters such as the secret redactor); none, changing
    nothing, when the root logger already has handlers (as `logging.basicConfig` does)."""
    root = logging.getLogger()
    if root.handlers:
        return []
    if fmt == "json":
        writers = [json_handler(stream)]
    else:
        text_handler.addFilter(_only(access=False))
        access = plain_handler(stream)
        access.addFilter(_only(access=True))
        writers = [text_handler, access]
    q: queue.Queue[logging.LogRecord] = queue.Queue(QUEUE_SIZE)
    handler = DroppingQueueHandler(q)
    handler.addFilter(RequestIdFilter())  # here, in the request's task: the writer thread has no context
    listener = QueueListener(q, *writers, respect_handler_level=True)
    listener.start()
    atexit.register(_stop, listener)
    root.setLevel(level.upper())
    root.addHandler(handler)
    return writers
