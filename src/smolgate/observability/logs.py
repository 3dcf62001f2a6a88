"""Log records as text or JSON lines, each carrying the id of the request it was logged for.

The request id lives in a context variable the server sets as a request arrives (every request runs in its own
task, so its logs — the dispatcher's retries, the access line — carry its id without passing it around).
"""

from __future__ import annotations

import contextvars
import logging
import time
from typing import Any

import orjson

request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("smolgate_request_id", default=None)

ACCESS_HANDLER = "smolgate-access"  # the access logger's own text handler (cli.py)


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
    handler.set_name(ACCESS_HANDLER)
    handler.setFormatter(logging.Formatter("[%(asctime)s] %(levelname)-8s %(message)s", datefmt="%X"))
    return handler
