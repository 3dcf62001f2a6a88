"""`/admin/adapters`: LoRA adapters on a local provider, loaded and unloaded while the gateway serves (audited).

`POST /admin/adapters {"name", "path", "provider"?}` serves the PEFT adapter in directory `path` (on the gateway's
machine) as `<provider>/<model>+<name>`; `DELETE /admin/adapters/{name}` stops serving it; `GET` lists them.
`provider` may be left out when there is one local provider. Adapters loaded here last until the provider
restarts (put them in the config's `adapters:` to keep them).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import msgspec

from ...config import ADAPTER_NAME
from ...errors import ErrorKind, GatewayError, invalid, not_found
from ...providers.local import LocalProvider
from ...routing import Route
from ..asgi import HttpRequest, Receive, Send
from .common import AdminRoute, reply, source

if TYPE_CHECKING:
    from ..runtime import Runtime


class NewAdapter(msgspec.Struct, kw_only=True):
    name: str
    path: str  # an absolute directory path on the gateway's machine
    provider: str | None = None


class AdapterInfo(msgspec.Struct, kw_only=True):
    provider: str
    name: str
    model: str  # what clients ask for
    path: str


class AdapterList(msgspec.Struct, kw_only=True):
    adapters: list[AdapterInfo]


def _local(rt: Runtime, name: str | None) -> LocalProvider:
    local = [p for p in rt.current.providers.values() if isinstance(p, LocalProvider)]
    found = [p for p in local if name in (None, p.name)]
    if len(found) != 1:
        if name is None and len(local) > 1:
            raise invalid("several local providers: name one with 'provider'", param="provider")
        raise not_found("no such local provider")
    return found[0]


def _info(p: LocalProvider, name: str) -> AdapterInfo:
    model = p.engine.model_id if p.engine is not None else "default"
    return AdapterInfo(provider=p.name, name=name, model=f"{p.name}/{model}+{name}", path=p.adapters[name])


async def list_adapters(
    rt: Runtime, req: HttpRequest, params: dict[str, str], send: Send, receive: Receive
) -> None:
    local = [p for p in rt.current.providers.values() if isinstance(p, LocalProvider)]
    await reply(send, AdapterList(adapters=[_info(p, n) for p in local for n in p.adapters]))


async def load_adapter(
    rt: Runtime, req: HttpRequest, params: dict[str, str], send: Send, receive: Receive
) -> None:
    try:
        body = msgspec.json.decode(req.body or b"{}", type=NewAdapter)
    except msgspec.DecodeError as exc:  # names the field, never its value
        raise invalid(f"invalid adapter: {exc}") from None
    if not ADAPTER_NAME.fullmatch(body.name):
        raise invalid("'name': letters, digits, . _ - only (up to 64)", param="name")
    path = Path(body.path)
    if not path.is_absolute() or not (path / "adapter_config.json").is_file():
        raise invalid("'path' must be an absolute directory holding a PEFT adapter", param="path")
    provider = _local(rt, body.provider)
    if provider.engine is None:
        raise GatewayError(ErrorKind.OVERLOADED, "the local model is still loading", retry_after=5)
    try:
        await provider.load_adapter(body.name, str(path))
    except ValueError as exc:  # AdapterError: the adapter does not fit this model or uses an unserved variant
        raise invalid(f"adapter refused: {exc}", param="path") from None
    info = _info(provider, body.name)
    bare = info.model.split("/", 1)[1]
    rt.current.router.add(
        bare, [Route(provider.name, bare)]
    )  # `<model>+<name>` without the provider works too
    await rt.audit("adapter.load", f"{provider.name}/{body.name}", source(req), req.actor, path=str(path))
    await reply(send, info, 201)


async def unload_adapter(
    rt: Runtime, req: HttpRequest, params: dict[str, str], send: Send, receive: Receive
) -> None:
    name = params["name"]
    provider = _local(rt, req.query.get("provider"))
    if not ADAPTER_NAME.fullmatch(name) or name not in provider.adapters:  # never echo an arbitrary segment
        raise not_found("no adapter of that name is loaded")
    info = _info(provider, name)
    await provider.unload_adapter(name)
    await rt.audit("adapter.unload", f"{provider.name}/{name}", source(req), req.actor)
    await reply(send, info)


ROUTES = [
    AdminRoute(
        "GET",
        "/admin/adapters",
        list_adapters,
        "the LoRA adapters local providers serve",
        response=AdapterList,
    ),
    AdminRoute(
        "POST",
        "/admin/adapters",
        load_adapter,
        "serve a PEFT LoRA adapter on a local provider as <provider>/<model>+<name>",
        body=NewAdapter,
        response=AdapterInfo,
    ),
    AdminRoute(
        "DELETE",
        "/admin/adapters/{name}",
        unload_adapter,
        "stop serving a LoRA adapter (?provider= when several local providers)",
        response=AdapterInfo,
        query=("provider",),
    ),
]
