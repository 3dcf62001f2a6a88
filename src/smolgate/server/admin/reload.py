"""`POST /admin/reload`: re-read the config file and serve new requests with it (server/reload.py); a bad file
is refused with its config error and the running config stays."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ...config import ConfigError
from ...errors import invalid
from ..asgi import HttpRequest, Receive, Send
from ..reload import ReloadError
from ..runtime import ReloadResult
from .common import AdminRoute, reply, source

if TYPE_CHECKING:
    from ..runtime import Runtime


async def reload_config(
    rt: Runtime, req: HttpRequest, params: dict[str, str], send: Send, receive: Receive
) -> None:
    try:
        result = await rt.reload(req.actor, source(req))
    except (ConfigError, ReloadError) as exc:  # its message names file, line and field, never a credential
        raise invalid(f"config reload refused, the running config stays: {exc}") from None
    await reply(send, result)


ROUTES = [
    AdminRoute(
        "POST",
        "/admin/reload",
        reload_config,
        "re-read the config file; new requests use it, requests in flight finish on the old one",
        response=ReloadResult,
    )
]
