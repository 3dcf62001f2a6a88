"""`/admin/accounts`: every provider account's live pool state (with Redis: the whole fleet's view)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..asgi import HttpRequest, Receive, Send
from .common import AdminRoute, reply

if TYPE_CHECKING:
    from ..runtime import Runtime


async def list_accounts(
    rt: Runtime, req: HttpRequest, params: dict[str, str], send: Send, receive: Receive
) -> None:
    pools = rt.pools
    if pools is not None:
        await pools.refresh()
    await reply(send, {"accounts": pools.snapshot() if pools is not None else []})


ROUTES = [AdminRoute("GET", "/admin/accounts", list_accounts, "every provider account and its pool state")]
