"""OpenAI Responses (`POST /v1/responses`), both as served to clients and as an upstream.

Client side: openai_responses_input.py decodes (all tool types, hosted-tool items, packed reasoning);
openai_responses_stream.py renders responses and streams. State (previous_response_id, store,
item_reference, GET/DELETE) lives in responses_store.py and server/responses_api.py.

Lossy:
- `conversation` (the Conversations API) is refused (400); `background`, `prompt` are ignored.
- instructions and system/developer messages are hoisted into Request.system (position lost).
- hosted tools (web_search, file_search, mcp, code_interpreter, computer, image_generation, local_shell,
  shell, apply_patch, tool_search, …) reach Responses upstreams only (raw); for other upstreams they are
  dropped (named in `x-smolgate-dropped-tools` and logged). Their output items sent back as input stay in
  place (`Opaque`) for Responses upstreams; a streamed upstream's hosted-tool items are not relayed.
- namespaces and custom tools reach other upstreams as functions (tool_kinds.py); a custom tool's grammar
  becomes part of its description there.
- input_file / file_id parts are rejected (400); video has no Responses input part and is refused upstream.
- `text.format.description` / `text.verbosity` are not carried canonically.
- reasoning items keep their summary text and encrypted_content (as Reasoning.redacted) but not their id:
  new `rs_` ids are minted; when calling an upstream, reasoning without encrypted_content is dropped (it
  could only be replayed by id from OpenAI's store); a streamed upstream's encrypted_content is kept only
  when it arrives in `output_item.added` or `output_item.done`. Other providers' signed reasoning is packed
  into encrypted_content (reasoning_blob.py).
- multiple summary parts of one reasoning item are joined with a blank line; assistant refusals are text.
- top_k is accepted from clients but never sent upstream; stop sequences and seed have no Responses
  field (not sent); a response is only completed or incomplete (max_output_tokens / content_filter), so
  end_turn and stop_sequence are indistinguishable on the way back in (tool_use is inferred from calls).
- ToolResult.is_error has no field; cache_creation_tokens has no usage field.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from .. import tool_kinds as tk
from ..canonical import (
    Block,
    Image,
    Opaque,
    Reasoning,
    Request,
    Response,
    StopReason,
    Text,
    Tool,
    ToolCall,
    ToolResult,
    Video,
)
from ..errors import GatewayError, invalid
from . import openai_common as oc
from .base import Codec, ErrorReply, RequestContext, StreamDecoder, StreamEncoder, UpstreamRequest
from .common import loads_body, new_id, now
from .openai_decoders import ResponsesStreamDecoder, output_item_blocks, responses_stop
from .openai_responses_input import PROTOCOL, decode
from .openai_responses_stream import (
    ResponsesStreamEncoder,
    client_view,
    includes_encrypted,
    output_items,
    response_object,
    tool_defs,
)
from .spec import ClientRoute, ProtocolSpec, RouteKind, Upstream, bearer


def decode_request(body: bytes) -> Request:
    """A stateless decode: `previous_response_id` / `item_reference` need the store (responses_api.py)."""
    d = loads_body(body)
    if d.get("previous_response_id") is not None:
        raise invalid(
            "'previous_response_id' needs the gateway's response store", param="previous_response_id"
        )
    return decode(d)


# ---------------------------------------------------------------- upstream side


def _input_parts(blocks: list[Any], role: str) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = []
    for b in blocks:
        if isinstance(b, Text):
            parts.append(
                {
                    "type": "output_text" if role == "assistant" else "input_text",
                    "text": b.text,
                    **({"annotations": []} if role == "assistant" else {}),
                }
            )
        elif isinstance(b, Image):
            parts.append({"type": "input_image", "image_url": oc.media_url(b), "detail": b.detail or "auto"})
        elif isinstance(b, Video):
            raise invalid("this upstream (OpenAI Responses) cannot take video input")
    return parts


def _flush(items: list[dict[str, Any]], role: str, pending: list[Block]) -> None:
    if pending:
        items.append({"type": "message", "role": role, "content": _input_parts(pending, role)})
        pending.clear()


def _call_item(b: ToolCall, tool: Tool | None) -> dict[str, Any]:
    name, ns = (tool.local_name or tool.name, tool.namespace) if tool is not None else (b.name, None)
    if tool is not None and tool.kind == "custom":
        item = {
            "type": "custom_tool_call",
            "call_id": b.id,
            "name": name,
            "input": tk.custom_input(b.arguments),
        }
    else:
        item = {"type": "function_call", "call_id": b.id, "name": name, "arguments": b.arguments}
    return {**item, "namespace": ns} if ns else item


def _input_items(req: Request) -> list[dict[str, Any]]:
    tools = tk.lookup(req)
    custom_calls: set[str] = set()
    items: list[dict[str, Any]] = []
    for msg in req.messages:
        pending: list[Block] = []
        for b in msg.content:
            if isinstance(b, ToolResult):
                _flush(items, msg.role, pending)
                images = [c for c in b.content if isinstance(c, Image)]
                texts = "\n".join(c.text for c in b.content if isinstance(c, Text))
                items.append(
                    {
                        "type": "custom_tool_call_output"
                        if b.call_id in custom_calls
                        else "function_call_output",
                        "call_id": b.call_id,
                        "output": _input_parts(b.content, "user") if images else texts,
                    }
                )
            elif isinstance(b, ToolCall):
                _flush(items, msg.role, pending)
                item = _call_item(b, tools.get(b.name))
                if item["type"] == "custom_tool_call":
                    custom_calls.add(b.id)
                items.append(item)
            elif isinstance(b, Reasoning):
                _flush(items, msg.role, pending)
                if (
                    b.redacted and not b.signature
                ):  # OpenAI's own encrypted reasoning; others' cannot replay here
                    items.append(
                        {
                            "type": "reasoning",
                            "id": new_id("rs_"),
                            "encrypted_content": b.redacted,
                            "summary": [{"type": "summary_text", "text": b.text}] if b.text else [],
                        }
                    )
            elif isinstance(b, Opaque):
                _flush(items, msg.role, pending)
                if b.protocol == PROTOCOL:
                    items.append(b.data)
            else:
                pending.append(b)
        _flush(items, msg.role, pending)
    return items


def encode_request(req: Request, upstream_model: str) -> UpstreamRequest:
    body: dict[str, Any] = {"model": upstream_model, "input": _input_items(req), "store": False}
    if req.system:
        body["instructions"] = req.system_text
    tools = tool_defs(req)
    if tools:
        body["tools"] = tools
        tc = req.tool_choice
        raw_choice = req.extras.responses.tool_choice
        if raw_choice is not None:
            body["tool_choice"] = raw_choice
        elif tc is not None and tc.mode == "tool":
            tool = tk.lookup(req).get(tc.name or "")
            body["tool_choice"] = {
                "type": "custom" if tool is not None and tool.kind == "custom" else "function",
                "name": tool.local_name or tool.name if tool is not None else tc.name,
            }
        elif tc is not None:
            body["tool_choice"] = tc.mode
        if tc is not None and tc.parallel is not None:
            body["parallel_tool_calls"] = tc.parallel
    rf = req.response_format
    if rf is not None and rf.type != "text":
        fmt: dict[str, Any] = {"type": rf.type}
        if rf.type == "json_schema":
            fmt.update(name=rf.name or "response", schema=rf.schema or {})
            if rf.strict is not None:
                fmt["strict"] = rf.strict
        body["text"] = {"format": fmt}
    for key, value in (
        ("max_output_tokens", req.max_tokens),
        ("temperature", req.temperature),
        ("top_p", req.top_p),
    ):
        if value is not None:
            body[key] = value
    effort = oc.effort_for(req.reasoning)
    if effort is not None:
        body["reasoning"] = {
            "effort": effort,
            **({"summary": "auto"} if req.reasoning and req.reasoning.include_thoughts else {}),
        }
        body["include"] = ["reasoning.encrypted_content"]
    body.update({k: v for k, v in req.extras.responses.params.items() if k not in body})
    if req.stream:
        body["stream"] = True
    return UpstreamRequest(
        path="/responses",
        body=orjson.dumps(body),
        stream=req.stream,
        headers={"content-type": "application/json"},
    )


def decode_response(body: bytes) -> Response:
    try:
        d = orjson.loads(body)
        if d.get("status") == "failed" or (d.get("error") and not d.get("output")):
            err = d.get("error")
            raise GatewayError(oc.kind_from_error(err), oc.error_message(err, "upstream response failed"))
        blocks: list[Block] = []
        for item in d.get("output") or []:
            blocks.extend(output_item_blocks(item))
        created = d.get("created_at")
        return Response(
            id=str(d.get("id") or new_id("resp_")),
            model=str(d.get("model") or ""),
            content=blocks,
            stop_reason=responses_stop(d, any(isinstance(b, ToolCall) for b in blocks)),
            usage=oc.usage_from_responses(d.get("usage")),
            created=int(created) if isinstance(created, (int, float)) else now(),
        )
    except GatewayError:
        raise
    except (orjson.JSONDecodeError, AttributeError, TypeError, KeyError, IndexError, ValueError) as exc:
        raise oc.upstream_bad(f"{type(exc).__name__}: {exc}") from exc


def render_response(resp: Response, req: Request, full_items: list[dict[str, Any]]) -> dict[str, Any]:
    """The response object a client sees, given the full output items (responses_api stores those)."""
    status = (
        "incomplete"
        if resp.stop_reason in (StopReason.MAX_TOKENS, StopReason.CONTENT_FILTER)
        else "completed"
    )
    return response_object(
        req,
        resp.id,
        resp.model,
        resp.created,
        status,
        client_view(full_items, includes_encrypted(req)),
        resp.usage,
        resp.stop_reason,
    )


# ---------------------------------------------------------------- the codec


class OpenAIResponsesCodec(Codec):
    name = "openai-responses"
    supports_stop = False  # the Responses API has no stop parameter: the gateway enforces them

    def decode_request(self, body: bytes, ctx: RequestContext) -> Request:
        return decode_request(body)

    def encode_response(self, resp: Response, req: Request) -> bytes:
        return orjson.dumps(render_response(resp, req, output_items(resp.content, req)))

    def stream_encoder(self, req: Request) -> StreamEncoder:
        return ResponsesStreamEncoder(req)

    def encode_error(self, err: GatewayError) -> ErrorReply:
        return oc.encode_error(err, responses=True)

    def encode_request(self, req: Request, upstream_model: str) -> UpstreamRequest:
        return encode_request(req, upstream_model)

    def decode_response(self, body: bytes) -> Response:
        return decode_response(body)

    def stream_decoder(self) -> StreamDecoder:
        return ResponsesStreamDecoder()

    def decode_error(self, status: int, body: bytes, headers: Mapping[str, str]) -> GatewayError:
        return oc.decode_error(status, body, headers)


# ---------------------------------------------------------------- the protocol's self-description
# (read by the registry in protocols/__init__.py: the server's routes, the HTTP provider's headers)

SPEC = ProtocolSpec(
    name="openai-responses",
    title="OpenAI Responses",
    codec=OpenAIResponsesCodec(),
    routes=(
        ClientRoute("POST", "/v1/responses", RouteKind.RESPONSES_CREATE),
        ClientRoute("GET", "/v1/responses/{id}", RouteKind.RESPONSES_GET),
        ClientRoute("DELETE", "/v1/responses/{id}", RouteKind.RESPONSES_DELETE),
        ClientRoute("GET", "/v1/responses/{id}/input_items", RouteKind.RESPONSES_INPUT_ITEMS),
    ),
    upstream=Upstream(auth=bearer),
)
