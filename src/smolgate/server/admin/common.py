"""What every admin module shares: its route type, JSON in and out, and the audit call's context."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

import msgspec
import orjson

from ...errors import invalid
from ...pool import Pools
from ..asgi import HttpRequest, Send, send_body
from ..table import Handler


@dataclass(frozen=True, slots=True)
class AdminRoute:
    method: str
    path: str  # under /admin/; `{name}` is one segment
    handler: Handler
    summary: str  # one line, for the OpenAPI document
    body: type | None = None  # the JSON body's type (a msgspec Struct), for the OpenAPI document
    response: type | None = None  # the JSON answer's type
    query: tuple[str, ...] = ()  # query parameters it reads


def json_body(req: HttpRequest) -> dict[str, Any]:
    """The request body as a JSON object (400 otherwise)."""
    try:
        body = orjson.loads(req.body or b"{}")
    except orjson.JSONDecodeError:
        raise invalid("request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise invalid("request body must be a JSON object")
    return body


async def reply(send: Send, obj: Any, status: int = 200) -> None:
    await send_body(send, status, orjson.dumps(obj, default=msgspec.to_builtins), "application/json")


def source(req: HttpRequest) -> str:
    """Where an admin call came from, for the audit log."""
    return req.client or "unknown"


USABLE_STATES = ("healthy", "half_open")  # states in which an account takes requests


def account_counts(pools: Pools | None) -> tuple[Counter[str], Counter[str]]:
    """Per provider: its accounts, and those usable now (this replica's view)."""
    total: Counter[str] = Counter()
    usable: Counter[str] = Counter()
    for a in pools.snapshot() if pools is not None else []:
        total[a.provider] += 1
        usable[a.provider] += a.state in USABLE_STATES
    return total, usable
