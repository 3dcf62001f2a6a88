"""Anthropic Messages: `POST /v1/messages` (+ `/v1/messages/count_tokens`, `GET /v1/models`).

Client side accepts both client generations (`x-api-key` + `anthropic-version: 2023-06-01`, and 2.x SDKs'
`Authorization: Bearer` + `2026-10-21`); the version header is never required and `temperature`/`top_p`/
`top_k` are accepted under both (auth is checked by the server). Upstream side talks to a root base_url with
`anthropic-version: 2023-06-01`. Streaming lives in `anthropic_stream.py`.

Lossy:
- `role:"system"` messages inside `messages` are hoisted into the system prompt for other upstreams; toward an Anthropic upstream one that follows other messages goes back to its place (before the next canonical turn; a system message between two turns of the same role lands after the merged turn), so the system prompt and the cached prefix stay the same from turn to turn.
- Consecutive same-role messages are merged into one turn (both directions).
- `document` blocks: only `source.type:"text"` documents are accepted (as text); PDF/url/file documents and `image.source.type:"file"` get a 400.
- Server tools (`web_search_*`, `bash_*`, …: any tool with a `type` other than "custom") and the raw `thinking` config ride in `Request.extras.anthropic` and only reach Anthropic upstreams; other upstreams never see them.
- Claude Code's `x-anthropic-billing-header: …` first system block is taken out of the system prompt (it changes per request, costs tokens and breaks prefix caching elsewhere) and restored only toward Anthropic upstreams.
- `cache_control` markers ride on canonical blocks and tools (`cache`: "ephemeral", a ttl, or the marker's JSON when it has other keys) and reach Anthropic upstreams only; other upstreams cache on their own. Top-level fields the codec does not model (`context_management`, `service_tier`, `container`, `mcp_servers`, …) and unmodelled `output_config` keys pass through verbatim to Anthropic upstreams only, as does the `anthropic-beta` header. `citations` are not modelled.
- Server-tool content blocks in upstream responses (`server_tool_use`, `web_search_tool_result`, …) are dropped.
- Stop reasons `pause_turn`, `model_context_window_exceeded`, `compaction` → canonical max_tokens; canonical content_filter → `refusal`.
- Tool ids from other providers are sanitised to `^[a-zA-Z0-9_-]+$` by replacing other characters with `_` (deterministic, not reversible; call and result stay consistent).
- Tool-call arguments that are not a JSON object render as `{"value": …}` (or `{"raw": text}` when not JSON) in non-streamed `input`; streamed `input_json_delta` passes fragments verbatim.
- Reasoning without a signature (from other providers) renders as a thinking block with `signature: ""`; unsigned reasoning is dropped when sending to an Anthropic upstream (it cannot be replayed).
- Opaque reasoning (`Reasoning.redacted`) without text renders as `redacted_thinking`; reasoning with both text and opaque data (Responses summary + `encrypted_content`) renders as a thinking block and the opaque part is lost.
- Toward an Anthropic upstream, signatures namespaced by another codec (containing ":", e.g. `gemini:…`) count as unsigned and are dropped; `redacted_thinking` is sent only for text-less opaque reasoning (an empty-summary Responses `encrypted_content` would still be sent and rejected).
- Toward an Anthropic upstream with thinking on: `temperature`/`top_k` are dropped and `top_p` < 0.95 is dropped (Anthropic rejects them); forced tool use (`any`/`tool`) wins over thinking, which is then not sent.
- Tool schemas without a top-level `type` get `"type": "object"` toward Anthropic upstreams.
- Video blocks are dropped towards Anthropic upstreams; `json_object` response format has no Anthropic equivalent and is dropped; `seed` is dropped.
- Upstream `metadata` keeps only `user_id` (the only key Anthropic accepts).
- Empty text blocks (and empty reasoning in non-streamed replies) are never rendered to clients: a streamed text block opens at its first non-empty delta, so a block that stays empty is omitted and later wire indices shift down.
- An upstream conversation that starts with an assistant turn (or is empty) gets a leading user turn `"."`; empty text blocks are removed; trailing whitespace of a final assistant prefill is stripped.
- `output_config.effort` becomes `ReasoningConfig.effort`; it is replayed as `output_config.effort` only toward Anthropic upstreams (an effort-only Anthropic request does not switch thinking on there). Without `thinking` the effort is only a hint (`ReasoningConfig.hint`): other upstreams get it only for targets declared `reasoning: true` (see reasoning.py).
- `max_tokens` defaults to 4096 upstream when the client gave none; a reasoning effort without a budget maps to budget_tokens minimal/low 1024, medium 2048, high 4096, xhigh 8192, max 16384 (budgets below 1024 are raised to 1024); when the budget does not fit below max_tokens, a defaulted max_tokens grows to budget+4096, a client-given one caps the budget at max_tokens-1, or thinking is left off if that is under 1024.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import orjson

from .. import retry_after
from ..canonical import (
    AnthropicExtras,
    Block,
    Extras,
    Image,
    Message,
    Reasoning,
    ReasoningConfig,
    Request,
    Response,
    ResponseFormat,
    StopReason,
    Text,
    Tool,
    ToolCall,
    ToolChoice,
    ToolResult,
    link_tool_results,
)
from ..errors import CONTEXT_LENGTH_EXCEEDED, ErrorKind, GatewayError, from_status, invalid
from .anthropic_render import API_VERSION, BILLING_PREFIX, response_block, upstream_body
from .anthropic_stream import (
    KIND_TO_TYPE,
    STOP_FROM_WIRE,
    STOP_TO_WIRE,
    AnthropicStreamDecoder,
    AnthropicStreamEncoder,
    message_id,
    usage_from_wire,
    usage_json,
    wire_usage,
)
from .base import Codec, ErrorReply, ModelInfo, RequestContext, StreamDecoder, StreamEncoder, UpstreamRequest
from .common import (
    check,
    check_http_url,
    decode_b64,
    field,
    loads_body,
    new_id,
    parse_data_url,
    sniff_image_type,
)
from .spec import ClientRoute, CountTokens, KeyPresentation, ProtocolSpec, RouteKind, Upstream

# Top-level request fields the codec models; any other field passes through to Anthropic upstreams only.
_MODELLED = frozenset(
    {
        "model",
        "max_tokens",
        "system",
        "messages",
        "tools",
        "tool_choice",
        "output_config",
        "output_format",
        "stop_sequences",
        "temperature",
        "top_p",
        "top_k",
        "stream",
        "thinking",
        "metadata",
    }
)
_NO_RETRY = {
    ErrorKind.INVALID_REQUEST,
    ErrorKind.AUTH,
    ErrorKind.PERMISSION,
    ErrorKind.NOT_FOUND,
    ErrorKind.TOO_LARGE,
    ErrorKind.QUOTA,
    ErrorKind.INTERNAL,
}
_STATUS_TYPE = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    502: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}


# ---------------------------------------------------------------- client side: wire request → canonical


def _cache(blk: dict[str, Any], p: str) -> str | None:
    """`cache_control` → canonical `cache`: "ephemeral", its ttl, or the marker's JSON when it says more."""
    cc = field(blk, "cache_control", dict, p)
    if cc is None:
        return None
    if set(cc) <= {"type", "ttl"} and cc.get("type") == "ephemeral":
        ttl = cc.get("ttl")
        return ttl if isinstance(ttl, str) and ttl else "ephemeral"
    return orjson.dumps(cc, option=orjson.OPT_SORT_KEYS).decode()


def _text_blocks(value: Any, path: str) -> list[Text]:
    """`string | [{type:"text", text}]` (system prompts, system messages)."""
    if isinstance(value, str):
        return [Text(text=value)] if value else []
    check(value, (str, list), path)
    out: list[Text] = []
    for i, blk in enumerate(value):
        p = f"{path}[{i}]"
        check(blk, dict, p)
        if blk.get("type") != "text":
            raise invalid(f"'{p}.type' must be \"text\"", param=f"{p}.type")
        text = field(blk, "text", str, p, required=True)
        if text:
            out.append(Text(text=text, cache=_cache(blk, p)))
    return out


def _image(blk: dict[str, Any], p: str) -> Image:
    src = field(blk, "source", dict, p, required=True)
    sp = f"{p}.source"
    typ = field(src, "type", str, sp, required=True)
    if typ == "base64":
        data = field(src, "data", str, sp, required=True)
        media = field(src, "media_type", str, sp)
        raw = decode_b64(data, f"{sp}.data")
        return Image(data=raw, media_type=media or sniff_image_type(raw))
    if typ == "url":
        url = field(src, "url", str, sp, required=True)
        if url.startswith("data:"):
            raw, media = parse_data_url(url, f"{sp}.url")
            return Image(data=raw, media_type=media)
        check_http_url(url, f"{sp}.url")
        return Image(url=url)
    raise invalid(f"unsupported image source type '{typ}'", param=f"{sp}.type")


def _document(blk: dict[str, Any], p: str) -> Text:
    src = field(blk, "source", dict, p, required=True)
    if src.get("type") == "text":
        return Text(text=field(src, "data", str, f"{p}.source", required=True))
    raise invalid("only text documents are supported", param=f"{p}.source.type")


def _tool_result_content(value: Any, p: str) -> list[Text | Image]:
    if value is None:
        return []
    if isinstance(value, str):
        return [Text(text=value)] if value else []
    check(value, (str, list), p)
    out: list[Text | Image] = []
    for i, blk in enumerate(value):
        bp = f"{p}[{i}]"
        check(blk, dict, bp)
        typ = field(blk, "type", str, bp, required=True)
        if typ == "text":
            text = field(blk, "text", str, bp, required=True)
            if text:
                out.append(Text(text=text))
        elif typ == "image":
            out.append(_image(blk, bp))
        elif typ == "document":
            out.append(_document(blk, bp))
        else:
            raise invalid(f"unsupported tool_result content type '{typ}'", param=f"{bp}.type")
    return out


def _block(blk: Any, role: str, p: str) -> Block | None:
    out = _block_of(blk, role, p)
    if isinstance(out, (Text, Image, ToolCall, ToolResult)):
        out.cache = _cache(blk, p)
    return out


def _block_of(blk: Any, role: str, p: str) -> Block | None:
    check(blk, dict, p)
    typ = field(blk, "type", str, p, required=True)
    if typ == "text":
        text = field(blk, "text", str, p, required=True)
        return Text(text=text) if text else None
    if typ == "image":
        return _image(blk, p)
    if typ == "document":
        return _document(blk, p)
    if typ == "tool_use":
        if role != "assistant":
            raise invalid("tool_use blocks belong in assistant messages", param=f"{p}.type")
        tid = field(blk, "id", str, p, required=True)
        name = field(blk, "name", str, p, required=True)
        inp = field(blk, "input", dict, p, default={})
        return ToolCall(id=tid, name=name, arguments=orjson.dumps(inp).decode())
    if typ == "tool_result":
        if role != "user":
            raise invalid("tool_result blocks belong in user messages", param=f"{p}.type")
        return ToolResult(
            call_id=field(blk, "tool_use_id", str, p, required=True),
            content=_tool_result_content(blk.get("content"), f"{p}.content"),
            is_error=bool(field(blk, "is_error", bool, p, default=False)),
        )
    if typ == "thinking":
        text = field(blk, "thinking", str, p, required=True)
        return Reasoning(text=text, signature=field(blk, "signature", str, p) or None)
    if typ == "redacted_thinking":
        return Reasoning(redacted=field(blk, "data", str, p, required=True))
    raise invalid(f"unsupported content block type '{typ}'", param=f"{p}.type")


def _messages(value: list[Any], system: list[Text], ax: AnthropicExtras) -> list[Message]:
    out: list[Message] = []
    placed = (
        ax.system_positions
    )  # (start, end, position): system[start:end] was a message before out[position]
    for i, msg in enumerate(value):
        p = f"messages[{i}]"
        check(msg, dict, p)
        role = field(msg, "role", str, p, required=True)
        content = msg.get("content")
        if role == "system":
            start = len(system)
            system.extend(_text_blocks(content if content is not None else "", f"{p}.content"))
            if out and len(system) > start:
                placed.append((start, len(system), len(out)))
            continue
        if role not in ("user", "assistant"):
            raise invalid(f"'{p}.role' must be one of user, assistant, system", param=f"{p}.role")
        if content is None:
            raise invalid(f"missing required field '{p}.content'", param=f"{p}.content")
        if isinstance(content, str):
            blocks: list[Block] = [Text(text=content)] if content else []
        else:
            check(content, (str, list), f"{p}.content")
            blocks = []
            for j, raw in enumerate(content):
                blk = _block(raw, role, f"{p}.content[{j}]")
                if blk is not None:
                    blocks.append(blk)
        if out and out[-1].role == role:
            out[-1].content.extend(blocks)  # consecutive same-role turns merge
        else:
            if not out and role != "user":
                raise invalid("the first message must use the 'user' role", param=f"{p}.role")
            out.append(Message(role=role, content=blocks))
    if not out:
        raise invalid("'messages' must contain at least one user message", param="messages")
    return out


def _tools(value: list[Any], ax: AnthropicExtras) -> list[Tool]:
    tools: list[Tool] = []
    server: list[dict[str, Any]] = []
    for i, t in enumerate(value):
        p = f"tools[{i}]"
        check(t, dict, p)
        typ = field(t, "type", str, p)
        if typ not in (None, "custom"):
            field(t, "name", str, p, required=True)
            server.append(t)
            continue
        tools.append(
            Tool(
                name=field(t, "name", str, p, required=True),
                description=field(t, "description", str, p),
                parameters=field(t, "input_schema", dict, p, required=True),
                cache=_cache(t, p),
            )
        )
    if server:
        ax.server_tools = server
    return tools


def _tool_choice(tc: dict[str, Any]) -> ToolChoice:
    typ = field(tc, "type", str, "tool_choice", required=True)
    dis = field(tc, "disable_parallel_tool_use", bool, "tool_choice")
    parallel = None if dis is None else not dis
    if typ == "auto":
        return ToolChoice(mode="auto", parallel=parallel)
    if typ == "any":
        return ToolChoice(mode="required", parallel=parallel)
    if typ == "none":
        return ToolChoice(mode="none")
    if typ == "tool":
        return ToolChoice(
            mode="tool", name=field(tc, "name", str, "tool_choice", required=True), parallel=parallel
        )
    raise invalid("'tool_choice.type' must be one of auto, any, tool, none", param="tool_choice.type")


def _reasoning(obj: dict[str, Any], effort: str | None, ax: AnthropicExtras) -> ReasoningConfig | None:
    th = field(obj, "thinking", dict)
    if th is None:  # an effort alone asks for less or more work, not for thinking
        return ReasoningConfig(effort=effort, hint=True) if effort else None
    typ = field(th, "type", str, "thinking", required=True)
    display = field(th, "display", str, "thinking")
    include = None if display is None else display != "omitted"
    ax.thinking = th
    if typ == "enabled":
        budget = field(th, "budget_tokens", int, "thinking", required=True)
        return ReasoningConfig(budget_tokens=budget, effort=effort, include_thoughts=include)
    if typ == "disabled":
        return ReasoningConfig(enabled=False)
    if typ in ("adaptive", "between_tools"):
        return ReasoningConfig(effort=effort, include_thoughts=include)
    raise invalid("'thinking.type' must be one of enabled, disabled, adaptive", param="thinking.type")


def _response_format(fmt: dict[str, Any] | None, path: str) -> ResponseFormat | None:
    if fmt is None:
        return None
    typ = field(fmt, "type", str, path, required=True)
    if typ != "json_schema":
        raise invalid(f"'{path}.type' must be \"json_schema\"", param=f"{path}.type")
    return ResponseFormat(type="json_schema", schema=field(fmt, "schema", dict, path, required=True))


def _decode(obj: dict[str, Any], ctx: RequestContext, *, count_tokens: bool) -> Request:
    model = field(obj, "model", str, required=True)
    max_tokens = field(obj, "max_tokens", int, required=not count_tokens)
    if max_tokens is not None and max_tokens < 1:
        raise invalid("'max_tokens' must be at least 1", param="max_tokens")
    system = _text_blocks(obj["system"], "system") if obj.get("system") is not None else []
    ax = AnthropicExtras()
    if system and system[0].text.startswith(BILLING_PREFIX):  # Claude Code's per-request attribution line
        ax.billing_header = system.pop(0).text
    messages = _messages(field(obj, "messages", list, required=True), system, ax)
    tools = _tools(field(obj, "tools", list, default=[]), ax)
    tc = field(obj, "tool_choice", dict)
    oc = field(obj, "output_config", dict, default={})
    effort = field(oc, "effort", str, "output_config")
    if effort:
        ax.effort = effort
    fmt = _response_format(
        field(oc, "format", dict, "output_config"), "output_config.format"
    ) or _response_format(field(obj, "output_format", dict), "output_format")
    stop = field(obj, "stop_sequences", list, default=[])
    for i, s in enumerate(stop):
        check(s, str, f"stop_sequences[{i}]")
    beta = ctx.headers.get("anthropic-beta")
    if beta:
        ax.beta = beta
    ax.output_config = {k: v for k, v in oc.items() if k not in ("effort", "format")}
    ax.passthrough = {k: v for k, v in obj.items() if k not in _MODELLED and v is not None}
    link_tool_results(messages)
    return Request(
        model=model,
        messages=messages,
        system=system,
        tools=tools,
        tool_choice=_tool_choice(tc) if tc is not None else None,
        response_format=fmt,
        max_tokens=max_tokens,
        temperature=field(obj, "temperature", float),
        top_p=field(obj, "top_p", float),
        top_k=field(obj, "top_k", int),
        stop=stop,
        stream=bool(field(obj, "stream", bool, default=False)),
        reasoning=_reasoning(obj, effort, ax),
        metadata=field(obj, "metadata", dict, default={}),
        extras=Extras(anthropic=ax),
    )


def decode_count_tokens_request(body: bytes, ctx: RequestContext) -> Request:
    """`/v1/messages/count_tokens` body: the messages body without `max_tokens`/`stream`."""
    return _decode(loads_body(body), ctx, count_tokens=True)


def encode_count_tokens(n: int) -> bytes:
    return orjson.dumps({"input_tokens": n})


def _rfc3339(ts: int) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _model_json(m: ModelInfo) -> dict[str, Any]:
    out: dict[str, Any] = {
        "type": "model",
        "id": m.id,
        "display_name": m.id,
        "created_at": _rfc3339(m.created),
        "lifecycle": "active",
    }
    if m.context_length is not None:
        out["max_input_tokens"] = m.context_length
    return out


def encode_models(models: list[ModelInfo]) -> bytes:
    data = [_model_json(m) for m in models]
    return orjson.dumps(
        {
            "data": data,
            "has_more": False,
            "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None,
        }
    )


def encode_model(model: ModelInfo) -> bytes:
    """`GET /v1/models/{id}`."""
    return orjson.dumps(_model_json(model))


# ---------------------------------------------------------------- the codec


class AnthropicCodec(Codec):
    name = "anthropic"

    # ---- client side ----
    def decode_request(self, body: bytes, ctx: RequestContext) -> Request:
        return _decode(loads_body(body), ctx, count_tokens=False)

    def encode_response(self, resp: Response, req: Request) -> bytes:
        content = [blk for b in resp.content if (blk := response_block(b)) is not None]
        return orjson.dumps(
            {
                "id": message_id(resp.id),
                "type": "message",
                "role": "assistant",
                "model": resp.model or req.model,
                "content": content,
                "stop_reason": STOP_TO_WIRE.get(resp.stop_reason, "end_turn"),
                "stop_sequence": resp.stop_sequence,
                "usage": usage_json(resp.usage),
            }
        )

    def stream_encoder(self, req: Request) -> StreamEncoder:
        return AnthropicStreamEncoder(req)

    def encode_error(self, err: GatewayError) -> ErrorReply:
        # Anthropic's own statuses: 529 when overloaded, 402 billing_error when credit is exhausted
        status = {ErrorKind.OVERLOADED: 529, ErrorKind.QUOTA: 402}.get(err.kind, err.status)
        typ = _STATUS_TYPE.get(status) or KIND_TO_TYPE.get(err.kind, "api_error")
        rid = new_id("req_")
        message = err.message
        o = err.overflow
        if (
            err.code == CONTEXT_LENGTH_EXCEEDED
        ):  # the wording Claude Code matches (compacts / lowers max_tokens)
            if o is not None and o.prompt_tokens is not None and o.limit is not None:
                message = (
                    f"input length and `max_tokens` exceed context limit: {o.prompt_tokens} + "
                    f"{o.max_tokens} > {o.limit}, decrease input length or `max_tokens` and try again"
                    if o.max_tokens is not None and o.prompt_tokens < o.limit
                    else f"prompt is too long: {o.prompt_tokens} tokens > {o.limit} maximum"
                )
            elif "prompt is too long" not in message.lower():
                message = f"prompt is too long: {message}"
        elif err.param and err.kind is ErrorKind.INVALID_REQUEST and err.param not in message:
            message = f"{err.param}: {message}"
        headers = {"request-id": rid, **retry_after.render(err.retry_after)}
        if err.kind in _NO_RETRY:
            headers["x-should-retry"] = "false"
        body = {"type": "error", "error": {"type": typ, "message": message}, "request_id": rid}
        return ErrorReply(status=status, body=orjson.dumps(body), headers=headers)

    # ---- upstream side ----
    def encode_request(self, req: Request, upstream_model: str) -> UpstreamRequest:
        headers = {"anthropic-version": API_VERSION}
        beta = req.extras.anthropic.beta
        if beta:
            headers["anthropic-beta"] = beta
        return UpstreamRequest(
            path="/v1/messages",
            body=orjson.dumps(upstream_body(req, upstream_model)),
            stream=req.stream,
            headers=headers,
        )

    def decode_response(self, body: bytes) -> Response:
        try:
            d = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise GatewayError(ErrorKind.UPSTREAM, "upstream returned invalid JSON") from None
        if not isinstance(d, dict) or not isinstance(d.get("content"), list):
            if isinstance(d, dict) and d.get("type") == "error":
                err = d.get("error")
                msg = err.get("message") if isinstance(err, dict) else None
                raise GatewayError(ErrorKind.UPSTREAM, str(msg or "upstream error"))
            raise GatewayError(ErrorKind.UPSTREAM, "upstream response is not an Anthropic message")
        content: list[Block] = []
        for b in d["content"]:
            if not isinstance(b, dict):
                continue
            typ = b.get("type")
            if typ == "text" and isinstance(b.get("text"), str):
                content.append(Text(text=b["text"]))
            elif typ == "tool_use":
                inp = b.get("input")
                args = orjson.dumps(inp if isinstance(inp, dict) else {}).decode()
                content.append(
                    ToolCall(
                        id=str(b.get("id") or new_id("toolu_")), name=str(b.get("name") or ""), arguments=args
                    )
                )
            elif typ == "thinking":
                sig = b.get("signature")
                content.append(
                    Reasoning(
                        text=str(b.get("thinking") or ""),
                        signature=sig if isinstance(sig, str) and sig else None,
                    )
                )
            elif typ == "redacted_thinking":
                content.append(Reasoning(redacted=str(b.get("data") or "")))
        stop_seq, stop = d.get("stop_sequence"), d.get("stop_reason")
        return Response(
            id=str(d.get("id") or new_id("msg_")),
            model=str(d.get("model") or ""),
            content=content,
            stop_reason=STOP_FROM_WIRE.get(stop, StopReason.END_TURN)
            if isinstance(stop, str)
            else StopReason.END_TURN,
            stop_sequence=stop_seq if isinstance(stop_seq, str) else None,
            usage=usage_from_wire(wire_usage(d.get("usage"))),
        )

    def stream_decoder(self) -> StreamDecoder:
        return AnthropicStreamDecoder()

    def decode_error(self, status: int, body: bytes, headers: Mapping[str, str]) -> GatewayError:
        message = ""
        try:
            d = orjson.loads(body)
            err = d.get("error") if isinstance(d, dict) else None
            if isinstance(err, dict) and isinstance(err.get("message"), str):
                message = err["message"]
            elif isinstance(err, str):
                message = err
        except orjson.JSONDecodeError:
            pass
        if not message:
            message = body[:500].decode("utf-8", "replace").strip() or f"upstream returned HTTP {status}"
        return from_status(status, message, retry_after.from_headers(headers))


__all__ = [
    "AnthropicCodec",
    "decode_count_tokens_request",
    "encode_count_tokens",
    "encode_model",
    "encode_models",
]


# ---------------------------------------------------------------- the protocol's self-description
# (read by the registry in protocols/__init__.py: the server's routes, the HTTP provider's headers)


def _auth(key: str) -> dict[str, str]:
    return {"x-api-key": key}


SPEC = ProtocolSpec(
    name="anthropic",
    title="Anthropic",
    codec=AnthropicCodec(),
    routes=(
        ClientRoute("POST", "/v1/messages", RouteKind.CHAT),
        ClientRoute("POST", "/v1/messages/count_tokens", RouteKind.COUNT_TOKENS),
        ClientRoute("GET", "/v1/models", RouteKind.LIST_MODELS),  # shared with OpenAI and Gemini ≥3 clients
    ),
    upstream=Upstream(auth=_auth, fixed_headers={"anthropic-version": "2023-06-01"}),
    client_keys=KeyPresentation(headers=("x-api-key",)),  # SDK 2.x sends Bearer, ≤1.x x-api-key
    marker_headers=("anthropic-version",),  # every Anthropic SDK sends it
    error_prefixes=("/v1/messages",),
    list_models=encode_models,
    count_tokens=CountTokens(decode_count_tokens_request, encode_count_tokens),
)
