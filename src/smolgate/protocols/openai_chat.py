"""OpenAI Chat Completions (`POST /v1/chat/completions`), both as served to clients and as an upstream.

Lossy:
- n > 1 is rejected (400, param "n"): the canonical model has one choice.
- system/developer messages anywhere in the list are hoisted into Request.system (their position is lost).
- legacy `function` role / `functions` / `function_call`, `input_audio` and `file` parts are rejected (400).
- tool `strict`, `response_format.json_schema.description`, logprobs and audio are not carried canonically;
  sampling extras (frequency/presence penalty, logit_bias, user, …) pass through only to OpenAI upstreams.
- `tool_choice` `allowed_tools` keeps only its mode (auto/required); the allowed subset is dropped.
- assistant `refusal` text becomes plain text; a response refusal is plain text with finish_reason as given.
- reasoning is rendered as the non-standard `reasoning_content`; reasoning signatures / redacted payloads
  are dropped on output and reasoning is not sent back to an upstream in history.
- images inside tool results (tool messages are text-only) go upstream in a follow-up user message;
  ToolResult.is_error has no Chat field and is dropped.
- top_k and metadata are not sent to an upstream (OpenAI rejects unknown parameters); stop-sequence
  identity is unknown on the way in (finish_reason "stop" covers both end_turn and stop_sequence).
- reasoning levels map through reasoning.py's table (a budget becomes the smallest covering effort, capped at
  high; `max` becomes high); an explicit `reasoning_effort: "none"` is forwarded, other "off" settings send nothing.
- usage: cache reads are `prompt_tokens_details.cached_tokens`; cache writes (Anthropic upstreams) are OpenRouter's
  `prompt_tokens_details.cache_write_tokens`; both are included in `prompt_tokens`.
- `cache_control` on text parts (the OpenRouter/LiteLLM convention) becomes a prompt-cache breakpoint, honoured
  by Anthropic upstreams only; on a system message it marks the end of the joined system text.
- video goes upstream as a non-standard `video_url` part (our engine takes it; OpenAI itself rejects it).
- an interleaved fragment for an earlier tool call (never seen from OpenAI) opens a new call.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from ..canonical import (
    Block,
    Extras,
    Image,
    Message,
    OpenAIExtras,
    Reasoning,
    Request,
    Response,
    ResponseFormat,
    Text,
    Tool,
    ToolCall,
    ToolChoice,
    ToolResult,
    Video,
    link_tool_results,
)
from ..errors import ErrorKind, GatewayError, invalid
from . import openai_common as oc
from .base import Codec, ErrorReply, ModelInfo, RequestContext, StreamDecoder, StreamEncoder, UpstreamRequest
from .common import check, field, loads_body, new_id, now
from .openai_chat_stream import ChatStreamEncoder, chat_id
from .openai_decoders import ChatStreamDecoder
from .spec import ClientRoute, ProtocolSpec, RouteKind, Upstream, bearer

# Body fields with no canonical meaning that pass through to an OpenAI upstream untouched.
PASSTHROUGH = (
    "frequency_penalty",
    "presence_penalty",
    "logit_bias",
    "user",
    "service_tier",
    "verbosity",
    "prompt_cache_key",
    "safety_identifier",
    "logprobs",
    "top_logprobs",
)


# ---------------------------------------------------------------- request decoding (client side)


def _text_of(content: Any, name: str, kinds: tuple[str, ...] = ("text",)) -> str:
    """String content or a list of text-like parts → one string."""
    if isinstance(content, str):
        return content
    check(content, list, name)
    out = []
    for j, part in enumerate(content):
        p = f"{name}[{j}]"
        check(part, dict, p)
        typ = field(part, "type", str, p, required=True)
        if typ not in kinds:
            raise invalid(
                f"'{p}.type' must be one of {', '.join(kinds)} here, got '{typ}'", param=f"{p}.type"
            )
        out.append(field(part, typ if typ == "refusal" else "text", str, p, required=True))
    return "".join(out)


def _user_blocks(content: Any, name: str) -> list[Block]:
    if isinstance(content, str):
        return [Text(text=content)]
    check(content, list, name)
    blocks: list[Block] = []
    for j, part in enumerate(content):
        p = f"{name}[{j}]"
        check(part, dict, p)
        typ = field(part, "type", str, p, required=True)
        if typ == "text":
            blocks.append(Text(text=field(part, "text", str, p, required=True), cache=_cache(part, p)))
        elif typ in ("image_url", "video_url"):
            inner = field(part, typ, dict, p, required=True)
            url = field(inner, "url", str, f"{p}.{typ}", required=True)
            detail = field(inner, "detail", str, f"{p}.{typ}")
            blocks.append(oc.media_from_url(url, f"{p}.{typ}.url", detail, video=typ == "video_url"))
        else:
            raise invalid(f"content part type '{typ}' is not supported", param=f"{p}.type")
    return blocks


def _cache(part: dict[str, Any], p: str) -> str | None:
    cc = field(part, "cache_control", dict, p)
    if cc is None:
        return None
    ttl = cc.get("ttl")
    return ttl if isinstance(ttl, str) and ttl else "ephemeral"


def _tool_call(tc: Any, name: str) -> ToolCall:
    check(tc, dict, name)
    fn = field(tc, "function", dict, name, required=True)
    args = fn.get("arguments")
    if isinstance(args, (dict, list)):
        args = orjson.dumps(args).decode()  # lenient: some clients send an object
    elif args is None:
        args = "{}"
    check(args, str, f"{name}.function.arguments")
    return ToolCall(
        id=field(tc, "id", str, name, required=True),
        name=field(fn, "name", str, f"{name}.function", required=True),
        arguments=args,
        signature=oc.thought_signature_in(tc),
    )


def _messages(raw: list[Any], system: list[Text]) -> list[Message]:
    messages: list[Message] = []
    for i, m in enumerate(raw):
        path = f"messages[{i}]"
        check(m, dict, path)
        role = field(m, "role", str, path, required=True)
        content = m.get("content")
        if role in ("system", "developer"):
            content = field(m, "content", (str, list), path, required=True)
            marked = isinstance(content, list) and any(
                isinstance(p, dict) and p.get("cache_control") for p in content
            )
            system.append(
                Text(text=_text_of(content, f"{path}.content"), cache="ephemeral" if marked else None)
            )
        elif role == "user":
            blocks = _user_blocks(field(m, "content", (str, list), path, required=True), f"{path}.content")
            messages.append(Message(role="user", content=blocks))
        elif role == "assistant":
            blocks = []
            reasoning = m.get("reasoning_content", m.get("reasoning"))
            if isinstance(reasoning, str) and reasoning:
                blocks.append(Reasoning(text=reasoning))
            if content is not None:
                text = _text_of(
                    check(content, (str, list), f"{path}.content"), f"{path}.content", ("text", "refusal")
                )
                if text:
                    blocks.append(Text(text=text))
            for j, tc in enumerate(field(m, "tool_calls", list, path, default=[])):
                blocks.append(_tool_call(tc, f"{path}.tool_calls[{j}]"))
            messages.append(Message(role="assistant", content=blocks))
        elif role == "tool":
            result = ToolResult(
                call_id=field(m, "tool_call_id", str, path, required=True),
                content=[
                    Text(
                        text=_text_of(
                            check(content if content is not None else "", (str, list), f"{path}.content"),
                            f"{path}.content",
                        )
                    )
                ],
            )
            prev = messages[-1] if messages else None
            if (
                prev is not None
                and prev.role == "user"
                and prev.content
                and all(isinstance(b, ToolResult) for b in prev.content)
            ):
                prev.content.append(result)  # consecutive tool messages form one user turn
            else:
                messages.append(Message(role="user", content=[result]))
        elif role == "function":
            raise invalid("the legacy 'function' role is not supported; use tools", param=f"{path}.role")
        else:
            raise invalid(f"unknown role '{role}'", param=f"{path}.role")
    return messages


def _tools(raw: list[Any]) -> list[Tool]:
    tools = []
    for i, t in enumerate(raw):
        path = f"tools[{i}]"
        check(t, dict, path)
        typ = field(t, "type", str, path, default="function")
        if typ != "function":
            raise invalid(f"tool type '{typ}' is not supported", param=f"{path}.type")
        fn = field(t, "function", dict, path, required=True)
        params = field(fn, "parameters", dict, f"{path}.function")
        tools.append(
            Tool(
                name=field(fn, "name", str, f"{path}.function", required=True),
                description=field(fn, "description", str, f"{path}.function"),
                **({"parameters": params} if params is not None else {}),
            )
        )
    return tools


def _tool_choice(tc: Any, parallel: bool | None) -> ToolChoice | None:
    if tc is None or isinstance(tc, str):
        return oc.plain_tool_choice(tc, parallel)
    check(tc, dict, "tool_choice")
    typ = field(tc, "type", str, "tool_choice", required=True)
    if typ == "function":
        fn = field(tc, "function", dict, "tool_choice", required=True)
        return ToolChoice(
            mode="tool", name=field(fn, "name", str, "tool_choice.function", required=True), parallel=parallel
        )
    if typ == "allowed_tools":
        mode = field(
            field(tc, "allowed_tools", dict, "tool_choice", default={}),
            "mode",
            str,
            "tool_choice.allowed_tools",
            default="auto",
        )
        return ToolChoice(mode="required" if mode == "required" else "auto", parallel=parallel)
    raise invalid(f"tool_choice type '{typ}' is not supported", param="tool_choice.type")


def _response_format(rf: Any) -> ResponseFormat | None:
    if rf is None:
        return None
    check(rf, dict, "response_format")
    typ = field(rf, "type", str, "response_format", required=True)
    if typ == "text":
        return None
    if typ == "json_object":
        return ResponseFormat(type="json_object")
    if typ == "json_schema":
        js = field(rf, "json_schema", dict, "response_format", required=True)
        p = "response_format.json_schema"
        return ResponseFormat(
            type="json_schema",
            name=field(js, "name", str, p, required=True),
            schema=field(js, "schema", dict, p),
            strict=field(js, "strict", bool, p),
        )
    raise invalid(f"response_format type '{typ}' is not supported", param="response_format.type")


def decode_request(body: bytes) -> Request:
    d = loads_body(body)
    model = field(d, "model", str, required=True)
    n = field(d, "n", int)
    if n is not None and n != 1:
        raise invalid("only n=1 is supported", param="n")
    system: list[Text] = []
    messages = _messages(field(d, "messages", list, required=True), system)
    max_tokens = field(d, "max_completion_tokens", int)
    if max_tokens is None:
        max_tokens = field(d, "max_tokens", int)
    stop = d.get("stop")
    effort = field(d, "reasoning_effort", str)
    stream = bool(field(d, "stream", bool, default=False))
    ox = OpenAIExtras(passthrough={k: d[k] for k in PASSTHROUGH if d.get(k) is not None})
    if stream:
        opts = field(d, "stream_options", dict, default={})
        ox.include_usage = bool(field(opts, "include_usage", bool, "stream_options", default=False))
    metadata = field(d, "metadata", dict, default={})
    req = Request(
        model=model,
        messages=messages,
        system=system,
        tools=_tools(field(d, "tools", list, default=[])),
        tool_choice=_tool_choice(d.get("tool_choice"), field(d, "parallel_tool_calls", bool)),
        response_format=_response_format(d.get("response_format")),
        max_tokens=max_tokens,
        temperature=oc.opt_number(d, "temperature"),
        top_p=oc.opt_number(d, "top_p"),
        top_k=field(d, "top_k", int),
        stop=oc.str_list(stop, "stop") if stop is not None else [],
        seed=field(d, "seed", int),
        stream=stream,
        reasoning=oc.reasoning_from_effort(effort) if effort is not None else None,
        metadata=metadata,
        extras=Extras(openai=ox),
    )
    link_tool_results(req.messages)
    return req


# ---------------------------------------------------------------- response encoding (client side)


def encode_response(resp: Response) -> bytes:
    text, reasoning, calls = [], [], []
    for b in resp.content:
        if isinstance(b, Text):
            text.append(b.text)
        elif isinstance(b, Reasoning):
            reasoning.append(b.text)
        elif isinstance(b, ToolCall):
            calls.append(
                oc.thought_signature_out(
                    {"id": b.id, "type": "function", "function": {"name": b.name, "arguments": b.arguments}},
                    b,
                )
            )
    msg: dict[str, Any] = {
        "role": "assistant",
        "content": "".join(text) if text or not calls else None,
        "refusal": None,
    }
    if calls:
        msg["tool_calls"] = calls
    if reasoning:
        msg["reasoning_content"] = "".join(reasoning)
    return orjson.dumps(
        {
            "id": chat_id(resp.id),
            "object": "chat.completion",
            "created": resp.created or now(),
            "model": resp.model,
            "choices": [
                {
                    "index": 0,
                    "message": msg,
                    "logprobs": None,
                    "finish_reason": oc.FINISH_REASONS[resp.stop_reason],
                }
            ],
            "usage": oc.chat_usage(resp.usage),
            "system_fingerprint": None,
        }
    )


# ---------------------------------------------------------------- upstream side


def _user_messages(msg: Message) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []
    for b in msg.content:
        if isinstance(b, ToolResult):
            texts = [c.text for c in b.content if isinstance(c, Text)]
            out.append({"role": "tool", "tool_call_id": b.call_id, "content": "\n".join(texts)})
            parts.extend(_part(c) for c in b.content if isinstance(c, Image))
        elif isinstance(b, (Text, Image, Video)):
            parts.append(_part(b))
    if parts:
        only_text = all(p["type"] == "text" for p in parts)
        out.append(
            {
                "role": "user",
                "content": "".join(p["text"] for p in parts) if only_text and len(parts) == 1 else parts,
            }
        )
    return out


def _part(b: Text | Image | Video) -> dict[str, Any]:
    if isinstance(b, Text):
        return {"type": "text", "text": b.text}
    if isinstance(b, Image):
        inner = {"url": oc.media_url(b)}
        if b.detail:
            inner["detail"] = b.detail
        return {"type": "image_url", "image_url": inner}
    return {"type": "video_url", "video_url": {"url": oc.media_url(b)}}


def encode_request(req: Request, upstream_model: str) -> UpstreamRequest:
    messages: list[dict[str, Any]] = []
    if req.system:
        messages.append({"role": "system", "content": req.system_text})
    for msg in req.messages:
        if msg.role == "user":
            messages.extend(_user_messages(msg))
            continue
        text = "".join(b.text for b in msg.content if isinstance(b, Text))
        calls = [
            {"id": b.id, "type": "function", "function": {"name": b.name, "arguments": b.arguments}}
            for b in msg.content
            if isinstance(b, ToolCall)
        ]
        m: dict[str, Any] = {"role": "assistant", "content": text if text or not calls else None}
        if calls:
            m["tool_calls"] = calls
        messages.append(m)
    body: dict[str, Any] = {"model": upstream_model, "messages": messages}
    if req.tools:
        body["tools"] = [
            {
                "type": "function",
                "function": {
                    "name": t.name,
                    "parameters": t.parameters,
                    **({"description": t.description} if t.description else {}),
                },
            }
            for t in req.tools
        ]
    tc = req.tool_choice
    if tc is not None and req.tools:
        body["tool_choice"] = (
            {"type": "function", "function": {"name": tc.name}} if tc.mode == "tool" else tc.mode
        )
        if tc.parallel is not None:
            body["parallel_tool_calls"] = tc.parallel
    rf = req.response_format
    if rf is not None and rf.type != "text":
        if rf.type == "json_schema":
            js: dict[str, Any] = {"name": rf.name or "response", "schema": rf.schema or {}}
            if rf.strict is not None:
                js["strict"] = rf.strict
            body["response_format"] = {"type": "json_schema", "json_schema": js}
        else:
            body["response_format"] = {"type": "json_object"}
    for key, value in (
        ("max_completion_tokens", req.max_tokens),
        ("temperature", req.temperature),
        ("top_p", req.top_p),
        ("seed", req.seed),
        ("reasoning_effort", oc.effort_for(req.reasoning)),
    ):
        if value is not None:
            body[key] = value
    if req.stop:
        body["stop"] = req.stop
    if req.stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    for k, v in req.extras.openai.passthrough.items():
        body.setdefault(k, v)
    return UpstreamRequest(
        path="/chat/completions",
        body=orjson.dumps(body),
        stream=req.stream,
        headers={"content-type": "application/json"},
    )


def _message_blocks(msg: dict[str, Any]) -> list[Block]:
    blocks: list[Block] = []
    reasoning = msg.get("reasoning_content") or msg.get("reasoning")
    if isinstance(reasoning, str) and reasoning:
        blocks.append(Reasoning(text=reasoning))
    content = msg.get("content")
    if isinstance(content, list):  # some servers answer with parts
        content = "".join(
            p.get("text", "") for p in content if isinstance(p, dict) and isinstance(p.get("text"), str)
        )
    if isinstance(content, str) and content:
        blocks.append(Text(text=content))
    elif isinstance(msg.get("refusal"), str) and msg["refusal"]:
        blocks.append(Text(text=msg["refusal"]))
    for tc in msg.get("tool_calls") or ():
        fn = tc.get("function") or {}
        args = fn.get("arguments")
        if not isinstance(args, str):
            args = orjson.dumps(args).decode() if args is not None else "{}"
        blocks.append(
            ToolCall(
                id=tc.get("id") or new_id("call_"), name=str(fn.get("name") or ""), arguments=args or "{}"
            )
        )
    return blocks


def decode_response(body: bytes) -> Response:
    try:
        d = orjson.loads(body)
        if isinstance(d, dict) and d.get("error"):
            raise GatewayError(ErrorKind.UPSTREAM, oc.error_message(d["error"]))
        choices = d.get("choices")
        if not choices:
            raise oc.upstream_bad("no choices")
        choice = choices[0]
        blocks = _message_blocks(choice.get("message") or {})
        return Response(
            id=str(d.get("id") or new_id("chatcmpl-")),
            model=str(d.get("model") or ""),
            content=blocks,
            stop_reason=oc.stop_from_finish(
                choice.get("finish_reason"), any(isinstance(b, ToolCall) for b in blocks)
            ),
            usage=oc.usage_from_chat(d.get("usage")),
            created=d["created"] if isinstance(d.get("created"), int) else now(),
        )
    except GatewayError:
        raise
    except (orjson.JSONDecodeError, AttributeError, TypeError, KeyError, IndexError, ValueError) as exc:
        raise oc.upstream_bad(f"{type(exc).__name__}: {exc}") from exc


# ---------------------------------------------------------------- /v1/models


def _model_obj(m: ModelInfo) -> dict[str, Any]:
    return {"id": m.id, "object": "model", "created": m.created, "owned_by": m.owned_by}


def encode_models(models: list[ModelInfo]) -> bytes:
    return orjson.dumps({"object": "list", "data": [_model_obj(m) for m in models]})


def encode_model(model: ModelInfo) -> bytes:
    return orjson.dumps(_model_obj(model))


# ---------------------------------------------------------------- the codec


class OpenAIChatCodec(Codec):
    name = "openai"

    def decode_request(self, body: bytes, ctx: RequestContext) -> Request:
        return decode_request(body)

    def encode_response(self, resp: Response, req: Request) -> bytes:
        return encode_response(resp)

    def stream_encoder(self, req: Request) -> StreamEncoder:
        return ChatStreamEncoder(req)

    def encode_error(self, err: GatewayError) -> ErrorReply:
        return oc.encode_error(err)

    def encode_request(self, req: Request, upstream_model: str) -> UpstreamRequest:
        return encode_request(req, upstream_model)

    def decode_response(self, body: bytes) -> Response:
        return decode_response(body)

    def stream_decoder(self) -> StreamDecoder:
        return ChatStreamDecoder()

    def decode_error(self, status: int, body: bytes, headers: Mapping[str, str]) -> GatewayError:
        return oc.decode_error(status, body, headers)


# ---------------------------------------------------------------- the protocol's self-description
# (read by the registry in protocols/__init__.py: the server's routes, the HTTP provider's headers)

SPEC = ProtocolSpec(
    name="openai",
    title="OpenAI",
    codec=OpenAIChatCodec(),
    routes=(
        ClientRoute("POST", "/v1/chat/completions", RouteKind.CHAT),
        ClientRoute("POST", "/chat/completions", RouteKind.CHAT),
        ClientRoute("GET", "/v1/models", RouteKind.LIST_MODELS),
        ClientRoute("GET", "/v1/models/{id:path}", RouteKind.GET_MODEL),
    ),
    upstream=Upstream(auth=bearer),
    error_prefixes=("/",),  # the gateway's own error shape, wherever no other protocol claims a path
    list_models=encode_models,
    describe_model=encode_model,
)
