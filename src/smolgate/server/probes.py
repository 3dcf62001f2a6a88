"""The gateway's own operational routes: `/health` (liveness), `/ready` (readiness) and `/metrics`.

The probes answer without any key (load balancers and Kubernetes send none) and say only what state the
gateway is in — never a name, an address or an error text. `/metrics` takes the admin key unless
`observability.metrics_public` (app.py decides; see docs/observability.md).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import orjson

from ..errors import not_found
from .asgi import HttpRequest, Receive, Send, send_body

if TYPE_CHECKING:
    from .runtime import Runtime

STORE_TIMEOUT = 2.0  # seconds a readiness probe waits for the store


async def health(rt: Runtime, req: HttpRequest, params: dict[str, str], send: Send, receive: Receive) -> None:
    """Liveness: the process answers. (Restarting a gateway because an upstream is down would not help.)"""
    await send_body(send, 200, b'{"status":"ok"}')


async def store_check(rt: Runtime) -> str:
    store = rt.store
    if store is None:
        return "none"
    ping = getattr(store, "ping", None)
    try:  # the cheapest bounded read every backend has, unless it offers a ping
        await asyncio.wait_for(ping() if ping is not None else store.audit_log(limit=1), STORE_TIMEOUT)
    except Exception:  # any failure, even a timeout, reads as unreachable; the text may hold a DSN
        return "unreachable"
    return "ok"


def engine_check(rt: Runtime) -> str:
    local = [p for p in rt.providers.values() if hasattr(p, "engine_stats")]
    if not local:
        return "none"
    return "ok" if all(getattr(p, "engine", None) is not None for p in local) else "loading"


async def ready(rt: Runtime, req: HttpRequest, params: dict[str, str], send: Send, receive: Receive) -> None:
    """Readiness: started, not shutting down, every local engine loaded, the store reachable, a provider
    configured. 503 with the same body when any check fails."""
    checks: dict[str, Any] = {
        "started": "ok" if rt.pools is not None else "starting",
        "shutting_down": rt.drain.stopping,
        "engine": engine_check(rt),
        "store": await store_check(rt),
        "providers": len(rt.providers),
    }
    ok = (
        checks["started"] == "ok"
        and not rt.drain.stopping
        and checks["engine"] != "loading"
        and checks["store"] != "unreachable"
        and rt.providers
    )
    body = {"status": "ready" if ok else "not ready", "checks": checks}
    await send_body(send, 200 if ok else 503, orjson.dumps(body))


async def metrics(
    rt: Runtime, req: HttpRequest, params: dict[str, str], send: Send, receive: Receive
) -> None:
    if rt.metrics is None:
        raise not_found("metrics are off (observability.metrics: false)")
    from ..observability.metrics import CONTENT_TYPE

    await send_body(send, 200, rt.metrics.exposition(), CONTENT_TYPE)
