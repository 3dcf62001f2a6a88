"""Ollama native API (`/api/chat`, `/api/generate`, `/api/tags`, `/api/show`, `/api/version`) ↔ canonical.

NDJSON streaming (`stream` defaults to true), tool calls with `id`, `function.index` and arguments as objects
(as current Ollama), bare base64 images, sampling under `options`, errors as `{"error": "string"}`. The
upstream side always speaks `/api/chat` on the root base URL with `stream` explicit.

Lossy:
- Older clients send tool calls without ids: decoding then generates stable ids `call_<n>` (n = position of the call in the conversation) and matches tool messages to the preceding calls by `tool_call_id`, else tool_name, else order. Ids are sent to clients and upstreams (`id`, `function.index` counting the response's calls, `tool_call_id` on results).
- Images are bare base64 (media type sniffed from magic bytes) and are placed before the message text; image URLs and video cannot be sent to an Ollama upstream (400).
- Tool results are text only: images inside a tool result move to the `images` of a user message right after the tool messages.
- Multiple text blocks of one message are joined with a newline; reasoning signatures and redacted reasoning are dropped (`thinking` is plain text).
- `think: "low"|"medium"|"high"` ↔ reasoning effort; toward an upstream, efforts and budgets map through reasoning.py's table (minimal → "low", xhigh/max → "high", a budget → its level), a plain request to think is `think: true`, thinking off is `think: false`, and no reasoning setting sends no `think` (the model's default).
- tool_choice: "none" drops the tools; Ollama cannot be told to call a tool, so a forced call ("required" or a named tool) goes upstream as a JSON-schema `format` describing the call and the model's JSON comes back as the tool call (forced_tools.py).
- done_reason has only stop|length: end_turn, stop_sequence, tool_use and content_filter all render as "stop" (tool_use is inferred from tool_calls when decoding); the matched stop sequence is unknown.
- Durations: total_duration is measured by the gateway; load/prompt_eval/eval durations are 0; cached and reasoning token counts are not expressible.
- /api/generate: `suffix`, `template`, `raw`, `context` are not representable (suffix kept only in Request.extras.ollama); tool calls in a generate response are dropped.
- options other than num_predict, temperature, top_p, top_k, seed and stop (num_ctx, repeat_penalty, …) and keep_alive are ignored.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import orjson

from .. import reasoning, retry_after
from ..canonical import (
    Block,
    Image,
    Message,
    Reasoning,
    ReasoningConfig,
    Request,
    Response,
    ResponseFormat,
    Text,
    Tool,
    ToolCall,
    ToolResult,
    Video,
    link_tool_results,
)
from ..errors import CONTEXT_LENGTH_EXCEEDED, ErrorKind, GatewayError, from_status, invalid
from .base import Codec, ErrorReply, ModelInfo, RequestContext, StreamDecoder, StreamEncoder, UpstreamRequest
from .common import b64, check, decode_b64, dumps, field, loads_body, new_id, sniff_image_type, whole_number
from .ollama_stream import (
    OllamaStreamDecoder,
    OllamaStreamEncoder,
    calls_in,
    final,
    iso,
    stop_in,
    tool_calls_out,
    usage_in,
)
from .spec import ClientRoute, ProtocolSpec, RouteKind, Upstream, bearer

_ROLES = ("system", "user", "assistant", "tool")
_EFFORTS = ("low", "medium", "high")


# ---------------------------------------------------------------- client side: request


def _images(value: Any, path: str) -> list[Image]:
    out = []
    for k, img in enumerate(check(value, list, path)):
        p = f"{path}[{k}]"
        check(img, str, p)
        if img.startswith("data:"):  # tolerated: some clients send data URLs
            img = img.partition(",")[2]
        data = decode_b64(img, p)
        out.append(Image(data=data, media_type=sniff_image_type(data)))
    return out


def _args_text(value: Any, path: str) -> str:
    if isinstance(value, str):  # tolerated: OpenAI-style JSON text
        return value or "{}"
    return orjson.dumps(check(value, dict, path)).decode()


def _common(req: Request, d: dict[str, Any]) -> None:
    """Fields shared by /api/chat and /api/generate: options, format, think."""
    opts = field(d, "options", dict)
    if opts:
        n = field(opts, "num_predict", int, "options")
        req.max_tokens = n if n is not None and n >= 0 else None
        req.temperature = field(opts, "temperature", float, "options")
        req.top_p = field(opts, "top_p", float, "options")
        req.top_k = whole_number(field(opts, "top_k", float, "options"), "options.top_k")
        req.seed = field(opts, "seed", int, "options")
        stop = field(opts, "stop", (list, str), "options")
        if isinstance(stop, str):
            stop = [stop]
        req.stop = [check(s, str, f"options.stop[{k}]") for k, s in enumerate(stop or [])]
    fmt = field(d, "format", (str, dict))
    if isinstance(fmt, dict):
        req.response_format = ResponseFormat(type="json_schema", schema=fmt, name="response")
    elif fmt == "json":
        req.response_format = ResponseFormat(type="json_object")
    elif fmt:
        raise invalid("'format' must be \"json\" or a JSON schema", param="format")
    think = field(d, "think", (bool, str))
    if isinstance(think, bool):
        req.reasoning = ReasoningConfig(enabled=think)
    elif think is not None:
        if think not in _EFFORTS:
            raise invalid("'think' must be a boolean or low|medium|high", param="think")
        req.reasoning = ReasoningConfig(enabled=True, effort=think)


def decode_chat(body: bytes) -> Request:
    d = loads_body(body)
    model = field(d, "model", str, required=True)
    stream = field(d, "stream", bool)
    req = Request(model=model, messages=[], stream=True if stream is None else stream)
    calls = 0
    pending: list[ToolCall] = []  # calls of the latest assistant turn still awaiting a result
    for i, m in enumerate(field(d, "messages", list) or []):
        mp = f"messages[{i}]"
        check(m, dict, mp)
        role = field(m, "role", str, mp, required=True)
        if role not in _ROLES:
            raise invalid(f"'{mp}.role' must be one of {', '.join(_ROLES)}", param=f"{mp}.role")
        content = field(m, "content", str, mp) or ""
        if role == "system":
            if content:
                req.system.append(Text(text=content))
            continue
        if role == "tool":
            name = field(m, "tool_name", str, mp) or field(m, "name", str, mp)
            cid = field(m, "tool_call_id", str, mp)
            match = next((c for c in pending if c.id == cid), None) if cid else None
            if match is None and name is not None:
                match = next((c for c in pending if c.name == name), None)
            if match is None and cid is None and pending:
                match = pending[0]
            if match is not None:
                pending.remove(match)
            result = ToolResult(
                call_id=cid or (match.id if match else f"call_{calls}"),
                name=name or (match.name if match else None),
                content=[Text(text=content)],
            )
            last = req.messages[-1] if req.messages else None
            if (
                last is not None
                and last.role == "user"
                and all(isinstance(b, ToolResult) for b in last.content)
            ):
                last.content.append(result)
            else:
                req.messages.append(Message(role="user", content=[result]))
            continue
        blocks: list[Block] = []
        if role == "assistant":
            thinking = field(m, "thinking", str, mp)
            if thinking:
                blocks.append(Reasoning(text=thinking))
        images = field(m, "images", list, mp)
        if images:
            blocks.extend(_images(images, f"{mp}.images"))
        if content:
            blocks.append(Text(text=content))
        tool_calls = field(m, "tool_calls", list, mp)
        if tool_calls and role != "assistant":
            raise invalid(
                f"'{mp}.tool_calls' is only allowed on assistant messages", param=f"{mp}.tool_calls"
            )
        if role == "assistant":
            pending = []
        for k, tc in enumerate(tool_calls or []):
            tp = f"{mp}.tool_calls[{k}]"
            check(tc, dict, tp)
            fn = field(tc, "function", dict, tp, required=True)
            call = ToolCall(
                id=field(tc, "id", str, tp) or f"call_{calls}",
                name=field(fn, "name", str, f"{tp}.function", required=True),
                arguments=_args_text(fn.get("arguments") or {}, f"{tp}.function.arguments"),
            )
            calls += 1
            pending.append(call)
            blocks.append(call)
        if blocks:
            req.messages.append(Message(role=role, content=blocks))
    for i, t in enumerate(field(d, "tools", list) or []):
        tp = f"tools[{i}]"
        check(t, dict, tp)
        fn = field(t, "function", dict, tp, required=True)
        tool = Tool(
            name=field(fn, "name", str, f"{tp}.function", required=True),
            description=field(fn, "description", str, f"{tp}.function"),
        )
        params = field(fn, "parameters", dict, f"{tp}.function")
        if params is not None:
            tool.parameters = params
        req.tools.append(tool)
    _common(req, d)
    link_tool_results(req.messages)
    return req


def decode_generate(body: bytes) -> Request:
    d = loads_body(body)
    model = field(d, "model", str, required=True)
    stream = field(d, "stream", bool)
    req = Request(model=model, messages=[], stream=True if stream is None else stream)
    system = field(d, "system", str)
    if system:
        req.system = [Text(text=system)]
    blocks: list[Block] = []
    images = field(d, "images", list)
    if images:
        blocks.extend(_images(images, "images"))
    prompt = field(d, "prompt", str) or ""
    if prompt:
        blocks.append(Text(text=prompt))
    if blocks:
        req.messages.append(Message(role="user", content=blocks))
    suffix = field(d, "suffix", str)
    if suffix:
        req.extras.ollama.suffix = suffix
    _common(req, d)
    return req


# ---------------------------------------------------------------- codecs


class OllamaChatCodec(Codec):
    name = "ollama"
    stream_media_type = "application/x-ndjson"
    needs_inline_images = True
    supports_tool_choice = (
        False  # a forced call reaches Ollama as a constrained JSON answer (forced_tools.py)
    )
    _generate = False

    # ---- client side ----
    def decode_request(self, body: bytes, ctx: RequestContext) -> Request:
        return decode_generate(body) if self._generate else decode_chat(body)

    def encode_response(self, resp: Response, req: Request) -> bytes:
        text = "".join(b.text for b in resp.content if isinstance(b, Text))
        thinking = "".join(b.text for b in resp.content if isinstance(b, Reasoning))
        obj: dict[str, Any] = {"model": resp.model or req.model, "created_at": iso(resp.created or None)}
        if self._generate:
            obj["response"] = text
            if thinking:
                obj["thinking"] = thinking
        else:
            msg: dict[str, Any] = {"role": "assistant", "content": text}
            if thinking:
                msg["thinking"] = thinking
            calls = [b for b in resp.content if isinstance(b, ToolCall)]
            if calls:
                msg["tool_calls"] = tool_calls_out(calls)
            obj["message"] = msg
        obj.update(final(resp.usage, resp.stop_reason, 0))
        return dumps(obj)

    def stream_encoder(self, req: Request) -> StreamEncoder:
        return OllamaStreamEncoder(self._generate, req.model)

    def encode_error(self, err: GatewayError) -> ErrorReply:
        headers = retry_after.render(err.retry_after)
        message = err.message
        if err.code == CONTEXT_LENGTH_EXCEEDED:  # Ollama's own wording (its runner's 400), counts when known
            o = err.overflow
            counts = f" ({o.prompt_tokens} tokens > {o.limit})" if o and o.prompt_tokens and o.limit else ""
            message = (
                "the prompt is longer than the context length currently available to the model"
                f"{counts}; shorten the prompt, adjust the context length in settings, or use a model "
                "with a longer context length"
            )
        return ErrorReply(err.status, dumps({"error": message}), headers)

    # ---- upstream side ----
    def encode_request(self, req: Request, upstream_model: str) -> UpstreamRequest:
        messages: list[dict[str, Any]] = []
        if req.system:
            messages.append({"role": "system", "content": req.system_text})
        for i, m in enumerate(req.messages):
            messages.extend(_message_out(m, i))
        body: dict[str, Any] = {"model": upstream_model, "messages": messages, "stream": req.stream}
        tools = req.tools
        tc = req.tool_choice
        if tc is not None and tc.mode == "none":
            tools = []
        elif tc is not None and tc.mode == "tool":
            tools = [t for t in tools if t.name == tc.name]
        if tools:
            body["tools"] = [
                {
                    "type": "function",
                    "function": {
                        "name": t.name,
                        **({"description": t.description} if t.description else {}),
                        "parameters": t.parameters,
                    },
                }
                for t in tools
            ]
        opts: dict[str, Any] = {}
        for key, value in (
            ("num_predict", req.max_tokens),
            ("temperature", req.temperature),
            ("top_p", req.top_p),
            ("top_k", req.top_k),
            ("seed", req.seed),
        ):
            if value is not None:
                opts[key] = value
        if req.stop:
            opts["stop"] = req.stop
        if opts:
            body["options"] = opts
        rf = req.response_format
        if rf is not None and rf.type == "json_object":
            body["format"] = "json"
        elif rf is not None and rf.type == "json_schema":
            body["format"] = rf.schema or "json"
        think = reasoning.ollama_think(req.reasoning)
        if think is not None:
            body["think"] = think
        return UpstreamRequest(
            path="/api/chat",
            body=dumps(body),
            stream=req.stream,
            headers={"content-type": "application/json"},
        )

    def decode_response(self, body: bytes) -> Response:
        try:
            obj = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise GatewayError(ErrorKind.UPSTREAM, "Ollama returned a body that is not JSON") from None
        if not isinstance(obj, dict):
            raise GatewayError(ErrorKind.UPSTREAM, "Ollama returned a body that is not a JSON object")
        if "error" in obj:
            raise GatewayError(ErrorKind.UPSTREAM, str(obj["error"]))
        raw = obj.get("message")
        msg: dict[str, Any] = raw if isinstance(raw, dict) else {}
        content: list[Any] = []
        thinking, text = msg.get("thinking"), msg.get("content", obj.get("response"))
        if isinstance(thinking, str) and thinking:
            content.append(Reasoning(text=thinking))
        if isinstance(text, str) and text:
            content.append(Text(text=text))
        calls = calls_in(msg.get("tool_calls"))
        content.extend(calls)
        return Response(
            id=new_id("msg_"),
            model=str(obj.get("model") or ""),
            content=content,
            stop_reason=stop_in(obj.get("done_reason"), bool(calls)),
            usage=usage_in(obj),
            created=int(time.time()),
        )

    def stream_decoder(self) -> StreamDecoder:
        return OllamaStreamDecoder()

    def decode_error(self, status: int, body: bytes, headers: Mapping[str, str]) -> GatewayError:
        message = ""
        try:
            obj = orjson.loads(body)
            if isinstance(obj, dict):
                err = obj.get("error")
                message = (
                    err
                    if isinstance(err, str)
                    else str(err.get("message", ""))
                    if isinstance(err, dict)
                    else ""
                )
        except orjson.JSONDecodeError:
            pass
        message = message or body[:500].decode("utf-8", "replace").strip() or f"Ollama returned HTTP {status}"
        return from_status(status, message, retry_after.from_headers(headers))


class OllamaGenerateCodec(OllamaChatCodec):
    """`/api/generate`: prompt/system/images in, `response` out. Upstream side is shared with chat."""

    name = "ollama-generate"
    _generate = True


def _message_out(m: Message, i: int) -> list[dict[str, Any]]:
    """One canonical message → Ollama messages (tool results become `tool` messages first)."""
    out: list[dict[str, Any]] = []
    texts: list[str] = []
    thinking: list[str] = []
    images: list[str] = []
    calls: list[ToolCall] = []
    for j, b in enumerate(m.content):
        if isinstance(b, Text):
            texts.append(b.text)
        elif isinstance(b, Reasoning):
            if b.text:
                thinking.append(b.text)
        elif isinstance(b, ToolCall):
            calls.append(b)
        elif isinstance(b, ToolResult):
            msg: dict[str, Any] = {
                "role": "tool",
                "content": "\n".join(c.text for c in b.content if isinstance(c, Text)),
            }
            if b.name:
                msg["tool_name"] = b.name
            if b.call_id:
                msg["tool_call_id"] = b.call_id  # current Ollama matches results to calls by id
            out.append(msg)
            images.extend(b64(c.data) for c in b.content if isinstance(c, Image) and c.data is not None)
        elif isinstance(b, Image):
            if b.data is None:
                raise invalid(
                    "Ollama needs inline image bytes, got an image URL", param=f"messages[{i}].content[{j}]"
                )
            images.append(b64(b.data))
        elif isinstance(b, Video):
            raise invalid("Ollama does not accept video input", param=f"messages[{i}].content[{j}]")
    if texts or thinking or images or calls:
        msg = {"role": m.role, "content": "\n".join(texts)}
        if thinking:
            msg["thinking"] = "".join(thinking)
        if images:
            msg["images"] = images
        if calls:
            msg["tool_calls"] = tool_calls_out(calls)
        out.append(msg)
    return out


# ---------------------------------------------------------------- non-chat endpoints


def encode_tags(models: list[ModelInfo]) -> bytes:
    return dumps(
        {
            "models": [
                {
                    "name": m.id,
                    "model": m.id,
                    "modified_at": iso(m.created or 0),
                    "size": 0,
                    "digest": "",
                    "details": _details(),
                }
                for m in models
            ]
        }
    )


def _details() -> dict[str, Any]:
    return {
        "parent_model": "",
        "format": "",
        "family": "",
        "families": None,
        "parameter_size": "",
        "quantization_level": "",
    }


def encode_show(model: ModelInfo) -> bytes:
    info: dict[str, Any] = {"general.architecture": "smolgate", "general.name": model.id}
    if model.context_length:
        info["smolgate.context_length"] = model.context_length
    caps = ["completion", "tools"] + (["vision"] if model.supports_images else [])
    return dumps(
        {
            "modelfile": "",
            "parameters": "",
            "template": "",
            "details": _details(),
            "model_info": info,
            "capabilities": caps,
            "modified_at": iso(model.created or 0),
        }
    )


def encode_version() -> bytes:
    return dumps({"version": "0.12.0"})


# ---------------------------------------------------------------- the protocol's self-description
# (read by the registry in protocols/__init__.py: the server's routes, the HTTP provider's headers)

_PROBE = b"smolgate is running"  # Ollama clients probe `GET /` (the real server says "Ollama is running")

SPEC = ProtocolSpec(
    name="ollama",
    title="Ollama",
    codec=OllamaChatCodec(),
    routes=(
        ClientRoute("POST", "/api/chat", RouteKind.CHAT),
        ClientRoute("POST", "/api/generate", RouteKind.CHAT, codec=OllamaGenerateCodec()),
        ClientRoute("GET", "/api/tags", RouteKind.LIST_MODELS),
        ClientRoute("POST", "/api/show", RouteKind.SHOW_MODEL),
        ClientRoute("GET", "/api/version", RouteKind.FIXED, body=encode_version()),
        ClientRoute("GET", "/", RouteKind.FIXED, body=_PROBE, media_type="text/plain"),
        ClientRoute("HEAD", "/", RouteKind.FIXED, body=_PROBE, media_type="text/plain"),
    ),
    upstream=Upstream(auth=bearer),
    error_prefixes=("/api/",),
    list_models=encode_tags,
    describe_model=encode_show,
)
