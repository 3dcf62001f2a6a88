"""The stateful side of the OpenAI Responses API, for every upstream protocol.

`POST /v1/responses` resolves `previous_response_id` and `item_reference` from the response store, runs
the request like every generation endpoint, and stores the response (`store` defaults to true, as in the
real API). `GET` / `DELETE /v1/responses/{id}` and `GET /v1/responses/{id}/input_items` read the store.
Records are scoped to the client key that made them. Hosted tools that the request's target cannot run
are dropped and named in `x-smolgate-dropped-tools` (and the log), instead of failing the request.
"""

from __future__ import annotations

import hashlib
import logging
import weakref
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import msgspec
import orjson

from .. import tool_kinds as tk
from ..canonical import Origin, Request, Text, link_tool_results
from ..errors import ErrorKind, GatewayError, invalid
from ..policies import response_headers
from ..policies.privacy import requested
from ..protocols.common import check, field, loads_body
from ..protocols.openai_responses import render_response
from ..protocols.openai_responses_input import decode, items
from ..protocols.openai_responses_stream import (
    ENCRYPTED,
    ResponsesStreamEncoder,
    client_view,
    mint_id,
    output_items,
)
from ..responses_store import MemoryResponseStore, ResponseStore, StoredResponse, check_id
from .asgi import HttpRequest, Receive, Send, send_body, send_stream, unless_gone
from .streaming import encode_events
from .vkeys_auth import allow_model, owner_key

if TYPE_CHECKING:
    from .runtime import Runtime

log = logging.getLogger("smolgate.responses")
_STORES: weakref.WeakKeyDictionary[Runtime, ResponseStore] = weakref.WeakKeyDictionary()
_ITEM_PREFIX = {
    "message": "msg_",
    "function_call": "fc_",
    "custom_tool_call": "ctc_",
    "reasoning": "rs_",
    "function_call_output": "fco_",
    "custom_tool_call_output": "ctco_",
}


def store_for(rt: Runtime) -> ResponseStore:
    store = _STORES.get(rt)
    if store is None:
        store = _STORES[rt] = MemoryResponseStore()
    return store


def _owner(req: HttpRequest) -> str:
    """Who may read a stored response: whoever holds the client key that created it — for a virtual key, its
    current secret (vkeys_auth.owner_key) — and on an open gateway, all."""
    key = owner_key(req)
    return hashlib.sha256(key.encode()).hexdigest()[:32] if key else ""


def _with_id(item: dict[str, Any]) -> dict[str, Any]:
    """An input item as stored (and listed by input_items): with an id, string message content as parts."""
    out = dict(item)
    typ = out.setdefault("type", "message")
    if typ == "message" and isinstance(out.get("content"), str):
        part = "output_text" if out.get("role") == "assistant" else "input_text"
        out["content"] = [{"type": part, "text": out["content"]}]
    if not isinstance(out.get("id"), str):
        out["id"] = mint_id(_ITEM_PREFIX.get(str(typ), "item_"))
    return out


async def _own_items(
    store: ResponseStore, owner: str, raw: Any, history_ids: set[str]
) -> list[dict[str, Any]]:
    """The request's input as items: `item_reference`s replaced by what they name; items already in the
    previous response's context skipped (clients resend them by reference; OpenAI calls that a duplicate)."""
    if isinstance(raw, str):
        return [_with_id({"type": "message", "role": "user", "content": raw})]
    out = []
    for i, item in enumerate(raw):
        check(item, dict, f"input[{i}]")
        # an item reference's `type` is optional: a bare {"id": …} is one too
        if item.get("type") == "item_reference" or (
            "type" not in item and "role" not in item and "id" in item
        ):
            iid = check_id(item.get("id"), f"input[{i}].id")
            if iid in history_ids:
                continue
            found = await store.item(owner, iid)
            if found is not None:
                out.append(found)
                continue
            rec = await store.get(owner, iid) if iid.startswith("resp_") else None
            if rec is None:  # (a response id stands for that response's output items)
                raise GatewayError(
                    ErrorKind.NOT_FOUND, f"Item with id '{iid}' not found.", param=f"input[{i}].id"
                )
            out.extend(it for it in rec.response.get("output") or [] if it.get("id") not in history_ids)
        elif isinstance(item.get("id"), str) and item["id"] in history_ids:
            continue
        else:
            out.append(item)
    return out


def _merge(history: list[dict[str, Any]], own: Request) -> Request:
    """Prepend the stored conversation to a decoded request (instructions are not carried over, as in the
    real API; system/developer messages of the history are)."""
    system: list[Text] = []
    messages = items(history, system)
    merged = msgspec.structs.replace(own, messages=messages + own.messages, system=system + own.system)
    link_tool_results(merged.messages)
    return merged


def _dropped_tools(rt: Runtime, canon: Request) -> dict[str, str]:
    hosted = tk.hosted_names(canon)
    if not hosted:
        return {}
    try:
        route = rt.router.resolve(canon.model)[0]
    except (GatewayError, IndexError):
        return {}
    protocol = next((p.protocol for p in rt.cfg.providers if p.name == route.provider), None)
    if protocol == "openai-responses":
        return {}
    log.info(
        "hosted tools dropped: %s (target %s speaks %s, which cannot run them)",
        ", ".join(hosted),
        route.provider,
        protocol,
    )
    return {"x-smolgate-dropped-tools": ",".join(hosted)}


async def create(rt: Runtime, req: HttpRequest, params: dict[str, str], send: Send, receive: Receive) -> None:
    record = req.record
    if record is not None:
        record.generation, record.client_protocol = True, "openai-responses"
    d = loads_body(req.body)
    store, owner = store_for(rt), _owner(req)
    raw = field(d, "input", (str, list), required=True)
    prev = d.get("previous_response_id")
    history: list[dict[str, Any]] = []
    if prev is not None:
        check_id(prev, "previous_response_id")
        rec = await store.get(owner, prev)
        if rec is None:
            raise GatewayError(
                ErrorKind.NOT_FOUND,
                f"Previous response with id '{prev}' not found.",
                param="previous_response_id",
            )
        history = rec.conversation
    own_items = await _own_items(
        store, owner, raw, {i["id"] for i in history if isinstance(i.get("id"), str)}
    )
    canon = decode({**d, "input": own_items, "previous_response_id": None})
    client = canon.extras.responses.client
    assert client is not None  # the Responses decoder always sets it
    client.previous_response_id = prev
    if history:
        canon = _merge(history, canon)
    if record is not None:
        record.alias, record.stream = canon.model, canon.stream
    allow_model(req, canon.model)
    rt.router.check_name(canon.model)
    canon.origin = Origin(  # signed state kept per client (signatures.py)
        "openai-responses", owner, requested(req.privacy, req.headers, canon.metadata)
    )
    headers = _dropped_tools(rt, canon)
    rid = mint_id("resp_")
    stored_input = history + [_with_id(i) for i in own_items]
    keep = client.store
    cache = req.headers.get("x-smolgate-cache")
    if not canon.stream:
        resp = msgspec.structs.replace(
            await unless_gone(receive, rt.dispatcher.complete(canon, record, cache)), id=rid
        )
        full = output_items(resp.content, canon)
        obj = render_response(resp, canon, full)
        if keep:
            await store.put(StoredResponse(rid, owner, {**obj, "output": full}, stored_input))
        await send_body(send, 200, orjson.dumps(obj), headers={**headers, **(response_headers(record) or {})})
        return
    events = rt.dispatcher.stream(canon, record, cache)
    first = await unless_gone(receive, anext(events))  # errors before it: a plain error response
    enc = ResponsesStreamEncoder(canon, rid)

    async def chunks() -> AsyncIterator[bytes]:
        async for chunk in encode_events(enc, first, events, rt.drain, record):
            yield chunk
        if keep and enc.final is not None:
            await store.put(
                StoredResponse(rid, owner, {**enc.final, "output": enc.full_output}, stored_input)
            )
        yield enc.close()

    await send_stream(
        send, receive, chunks(), "text/event-stream", {**headers, **(response_headers(record) or {})}
    )


def _include_encrypted(req: HttpRequest) -> bool:
    return any(ENCRYPTED in v for k, v in req.query.items() if k.startswith("include"))


async def _record(rt: Runtime, req: HttpRequest, params: dict[str, str]) -> StoredResponse:
    rid = check_id(params["id"], "response_id")
    rec = await store_for(rt).get(_owner(req), rid)
    if rec is None:
        raise GatewayError(ErrorKind.NOT_FOUND, f"Response with id '{rid}' not found.", param="response_id")
    return rec


async def retrieve(
    rt: Runtime, req: HttpRequest, params: dict[str, str], send: Send, receive: Receive
) -> None:
    rec = await _record(rt, req, params)
    if req.query.get("stream") in ("true", "1"):
        raise invalid("streaming a stored response again is not supported", param="stream")
    obj = {**rec.response, "output": client_view(rec.response.get("output") or [], _include_encrypted(req))}
    await send_body(send, 200, orjson.dumps(obj))


async def delete(rt: Runtime, req: HttpRequest, params: dict[str, str], send: Send, receive: Receive) -> None:
    rec = await _record(rt, req, params)
    await store_for(rt).delete(rec.owner, rec.id)
    await send_body(send, 200, orjson.dumps({"id": rec.id, "object": "response.deleted", "deleted": True}))


async def input_items(
    rt: Runtime, req: HttpRequest, params: dict[str, str], send: Send, receive: Receive
) -> None:
    rec = await _record(rt, req, params)
    q = req.query
    limit_text = q.get("limit", "20")
    if not limit_text.isdigit() or not 1 <= int(limit_text) <= 100:
        raise invalid("'limit' must be an integer from 1 to 100", param="limit")
    order = q.get("order", "desc")
    if order not in ("asc", "desc"):
        raise invalid("'order' must be 'asc' or 'desc'", param="order")
    listed = client_view(rec.input_items, _include_encrypted(req))
    if order == "desc":
        listed.reverse()
    after = q.get("after")
    if after is not None:
        check_id(after, "after")
        ids = [i.get("id") for i in listed]
        if after not in ids:
            raise invalid(f"'after' names no item of this response: '{after}'", param="after")
        listed = listed[ids.index(after) + 1 :]
    page = listed[: int(limit_text)]
    await send_body(
        send,
        200,
        orjson.dumps(
            {
                "object": "list",
                "data": page,
                "first_id": page[0]["id"] if page else None,
                "last_id": page[-1]["id"] if page else None,
                "has_more": len(listed) > len(page),
            }
        ),
    )
