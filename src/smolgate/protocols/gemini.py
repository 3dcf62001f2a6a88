"""Google Gemini `generateContent` / `streamGenerateContent?alt=sse` / `countTokens` ↔ canonical model.

Client side: the model and the method come from the path (`/v1beta/models/{model}:{method}`, also
`/v1/…`); keys are accepted camelCase or snake_case. Upstream side: `/v1beta/models/{m}:generateContent`
or `:streamGenerateContent?alt=sse` on the root base URL. Part-level helpers live in `gemini_parts`.

Lossy:
- functionCall without `id` gets a stable synthetic id `call_<name>_<turn>_<n>` (client side) or a random `call_…` (upstream responses); functionResponse without `id` is matched to the latest model turn's calls by name, in order.
- functionResponse.response `{"output"|"result"|"error": <string>}` becomes the plain tool-result text (`error` sets is_error); any other object becomes its JSON text; encoding back writes `{"output": text}` / `{"error": text}`, or the object itself when the text is a JSON object (so `result` comes back as `output`).
- thoughtSignature is kept as `gemini:<sig>` on Reasoning.signature (on ToolCall.signature for call parts); a signature on a plain text part becomes an empty signed Reasoning after the Text and folds back onto that text part; non-Gemini signatures are never sent to Gemini (Anthropic thinking signatures do not survive a Gemini client).
- Unsigned or foreign reasoning is dropped toward a Gemini upstream; redacted/encrypted reasoning is dropped both ways; toward a Gemini client reasoning text appears as `thought: true` parts only when the request set includeThoughts (signatures always flow).
- `parameters` / `responseSchema` (OpenAPI subset) are converted to JSON Schema (`nullable` → type union, `propertyOrdering` dropped); upstream always sends `parametersJsonSchema` / `responseJsonSchema`.
- Only functionDeclarations tools are kept; googleSearch, codeExecution, urlContext and other hosted tools are ignored.
- executableCode / codeExecutionResult / videoMetadata parts and inlineData other than image/* or video/* are not representable (the latter is a 400).
- allowedFunctionNames with mode ANY narrows the tool list (a single name becomes tool choice "tool"); VALIDATED mode is treated as AUTO.
- safetySettings pass through only to a Gemini upstream (Request.extras.gemini); cachedContent, presencePenalty, frequencyPenalty, responseLogprobs, mediaResolution, speechConfig and labels are ignored.
- thinkingLevel maps to reasoning effort (and is sent back as given to a Gemini upstream); effort without a budget maps to thinkingBudget 128/1024/2048/4096/8192/16384 (minimal…max), see reasoning.py; includeThoughts without a budget or level is only a hint (other upstreams see it only for targets declared `reasoning: true`).
- cachedContent (explicit caches) is ignored; `cachedContentTokenCount` reports cache reads, prompt-cache writes have no Gemini field.
- finishReason cannot name a matched stop sequence or a tool call: STOP covers end_turn/stop_sequence/tool_use (tool_use is inferred from functionCall parts); the SAFETY family maps to content_filter.
- candidateCount > 1 is rejected (400); responses carry one candidate.
- Usage: candidatesTokenCount excludes thoughtsTokenCount (inclusive counts are detected by the sum); toolUsePromptTokenCount is folded into input tokens.
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
from ..providers.urls import path as upstream_path
from .base import Codec, ErrorReply, ModelInfo, RequestContext, StreamDecoder, StreamEncoder, UpstreamRequest
from .common import check, dumps, loads_body, new_id, whole_number
from .gemini_parts import (
    FINISH_OUT,
    PartReader,
    blocks_to_parts,
    finish_in,
    fld,
    get,
    media_part,
    result_response,
    to_json_schema,
    usage_in,
)
from .gemini_stream import GeminiStreamDecoder, GeminiStreamEncoder, chunk, error_obj
from .spec import ClientRoute, CountTokens, KeyPresentation, ProtocolSpec, RouteKind, Upstream

_METHODS = ("generateContent", "streamGenerateContent")
_MODES = {"AUTO": "auto", "ANY": "required", "NONE": "none", "VALIDATED": "auto", "MODE_UNSPECIFIED": "auto"}


# ---------------------------------------------------------------- client side: request


def _decode_generate(d: dict[str, Any], model: str, stream: bool, path: str) -> Request:
    at = _Path(path)
    req = Request(model=model, messages=_messages(d, at), stream=stream)
    req.system = _system(get(d, "systemInstruction"), at("systemInstruction"))
    req.tools = _tools(d, at)
    tc = fld(d, "toolConfig", dict, path)
    fcc = fld(tc, "functionCallingConfig", dict, at("toolConfig")) if tc else None
    if fcc:
        _tool_config(req, fcc, f"{at('toolConfig')}.functionCallingConfig")
    gc = fld(d, "generationConfig", dict, path)
    if gc:
        _decode_generation_config(req, gc, at("generationConfig"))
    safety = get(d, "safetySettings")
    if isinstance(safety, list) and safety:
        req.extras.gemini.safety_settings = safety
    return req


class _Path:
    """Names a field for error messages, under the request's own path (countTokens nests it)."""

    __slots__ = ("path",)

    def __init__(self, path: str) -> None:
        self.path = path

    def __call__(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key


def _messages(d: dict[str, Any], at: _Path) -> list[Message]:
    reader = PartReader()
    messages: list[Message] = []
    for i, content in enumerate(fld(d, "contents", list, at.path, required=True)):
        cp = f"{at('contents')}[{i}]"
        check(content, dict, cp)
        role_raw = fld(content, "role", str, cp) or "user"
        if role_raw not in ("user", "model", "function"):
            raise invalid(f"'{cp}.role' must be 'user' or 'model'", param=f"{cp}.role")
        role = "assistant" if role_raw == "model" else "user"
        if role == "assistant":
            reader.start_model_turn()
        blocks = []
        calls = 0
        for j, part in enumerate(fld(content, "parts", list, cp) or []):
            got = reader.read(part, f"{cp}.parts[{j}]", i, role, calls)
            calls += sum(1 for b in got if isinstance(b, (ToolCall, ToolResult)))
            blocks.extend(got)
        if blocks:
            messages.append(Message(role=role, content=blocks))  # type: ignore[arg-type]
    link_tool_results(messages)
    return messages


def _system(si: Any, sp: str) -> list[Text]:
    if si is None:
        return []
    if isinstance(si, str):
        return [Text(text=si)]
    check(si, dict, sp)
    out = []
    for j, part in enumerate(fld(si, "parts", list, sp) or []):
        check(part, dict, f"{sp}.parts[{j}]")
        text = fld(part, "text", str, f"{sp}.parts[{j}]")
        if text:
            out.append(Text(text=text))
    return out


def _tools(d: dict[str, Any], at: _Path) -> list[Tool]:
    out = []
    for i, tool in enumerate(fld(d, "tools", list, at.path) or []):
        tp = f"{at('tools')}[{i}]"
        check(tool, dict, tp)
        for j, decl in enumerate(fld(tool, "functionDeclarations", list, tp) or []):
            out.append(_declaration(decl, f"{tp}.functionDeclarations[{j}]"))
    return out


def _declaration(decl: Any, dp: str) -> Tool:
    check(decl, dict, dp)
    name = fld(decl, "name", str, dp, required=True)
    schema = fld(decl, "parametersJsonSchema", dict, dp)
    if schema is None:
        params = fld(decl, "parameters", dict, dp)
        schema = to_json_schema(params) if params is not None else None
    t = Tool(name=name, description=fld(decl, "description", str, dp))
    if schema is not None:
        t.parameters = schema
    return t


def _tool_config(req: Request, fcc: dict[str, Any], fp: str) -> None:
    mode = (fld(fcc, "mode", str, fp) or "AUTO").upper()
    if mode not in _MODES:
        raise invalid(f"'{fp}.mode' must be AUTO, ANY, NONE or VALIDATED", param=f"{fp}.mode")
    allowed = fld(fcc, "allowedFunctionNames", list, fp) or []
    for k, name in enumerate(allowed):
        check(name, str, f"{fp}.allowedFunctionNames[{k}]")
    req.tool_choice = ToolChoice(mode=_MODES[mode])  # type: ignore[arg-type]
    if allowed and mode in ("ANY", "VALIDATED"):
        req.tools = [t for t in req.tools if t.name in allowed]
        if len(allowed) == 1 and mode == "ANY":
            req.tool_choice = ToolChoice(mode="tool", name=allowed[0])


def _decode_generation_config(req: Request, gc: dict[str, Any], gp: str) -> None:
    req.temperature = fld(gc, "temperature", float, gp)
    req.top_p = fld(gc, "topP", float, gp)
    req.top_k = whole_number(fld(gc, "topK", float, gp), f"{gp}.topK")  # google-genai sends a float (3.0)
    req.max_tokens = fld(gc, "maxOutputTokens", int, gp)
    req.seed = fld(gc, "seed", int, gp)
    stops = fld(gc, "stopSequences", list, gp) or []
    req.stop = [check(s, str, f"{gp}.stopSequences[{k}]") for k, s in enumerate(stops)]
    n = fld(gc, "candidateCount", int, gp)
    if n is not None and n > 1:
        raise invalid("candidateCount > 1 is not supported", param=f"{gp}.candidateCount")
    mime = fld(gc, "responseMimeType", str, gp)
    schema = fld(gc, "responseJsonSchema", dict, gp)
    if schema is None:
        schema = fld(gc, "responseSchema", dict, gp)
        schema = to_json_schema(schema) if schema is not None else None
    if schema is not None:
        req.response_format = ResponseFormat(type="json_schema", schema=schema, name="response")
    elif mime == "application/json":
        req.response_format = ResponseFormat(type="json_object")
    thinking = fld(gc, "thinkingConfig", dict, gp)
    if thinking is not None:
        tp = f"{gp}.thinkingConfig"
        budget = fld(thinking, "thinkingBudget", int, tp)
        level = fld(thinking, "thinkingLevel", str, tp)
        effort = reasoning.gemini_effort(level) if level else None
        include = fld(thinking, "includeThoughts", bool, tp)
        if effort is not None:
            req.extras.gemini.thinking_level = level
        if budget is None and effort is None:  # includeThoughts alone: show thoughts if the model thinks
            req.reasoning = (
                ReasoningConfig(include_thoughts=include, hint=True) if include is not None else None
            )
        else:
            req.reasoning = ReasoningConfig(
                enabled=budget != 0,
                budget_tokens=budget if budget and budget > 0 else None,
                effort=effort,
                include_thoughts=include,
            )


def _model_from(ctx: RequestContext, d: dict[str, Any]) -> str:
    model = ctx.path_params.get("model") or (d.get("model") if isinstance(d.get("model"), str) else None)
    if not model:
        raise invalid("missing model in the request path", param="model")
    return model.removeprefix("models/")


def decode_count_tokens_request(body: bytes, ctx: RequestContext) -> Request:
    """`:countTokens` body: `{contents, …}` or `{generateContentRequest: {model, contents, …}}`."""
    d = loads_body(body)
    inner = fld(d, "generateContentRequest", dict, "")
    if inner is not None:
        return _decode_generate(inner, _model_from(ctx, inner), False, "generateContentRequest")
    return _decode_generate(d, _model_from(ctx, d), False, "")


def encode_count_tokens(n: int) -> bytes:
    return dumps({"totalTokens": n})


def encode_models(models: list[ModelInfo]) -> bytes:
    out = []
    for m in models:
        item: dict[str, Any] = {
            "name": f"models/{m.id}",
            "version": "001",
            "displayName": m.id,
            "supportedGenerationMethods": ["generateContent", "streamGenerateContent", "countTokens"],
        }
        if m.context_length:
            item["inputTokenLimit"] = m.context_length
            item["outputTokenLimit"] = m.context_length
        out.append(item)
    return dumps({"models": out})


# ---------------------------------------------------------------- the codec


def _retry_delay(err: Any) -> str | None:
    """Gemini's own hint in the error body: `RetryInfo.retryDelay`, a protobuf duration ("12.5s")."""
    for detail in (err.get("details") or []) if isinstance(err, dict) else ():
        delay = detail.get("retryDelay") if isinstance(detail, dict) else None
        if isinstance(delay, str):
            return delay
    return None


class GeminiCodec(Codec):
    name = "gemini"
    needs_inline_images = True

    # ---- client side ----
    def decode_request(self, body: bytes, ctx: RequestContext) -> Request:
        d = loads_body(body)
        method = ctx.path_params.get("method", "generateContent")
        if method not in _METHODS:
            raise invalid(f"unsupported method '{method}'", param="method")
        return _decode_generate(d, _model_from(ctx, d), method == "streamGenerateContent", "")

    def encode_response(self, resp: Response, req: Request) -> bytes:
        parts = blocks_to_parts(resp.content, upstream=False, thoughts=_thoughts(req))
        return dumps(chunk(parts, resp.id, resp.model, FINISH_OUT[resp.stop_reason], resp.usage))

    def stream_encoder(self, req: Request) -> StreamEncoder:
        return GeminiStreamEncoder(show_thoughts=_thoughts(req))

    def encode_error(self, err: GatewayError) -> ErrorReply:
        headers = retry_after.render(err.retry_after)
        message, o = err.message, err.overflow
        if err.code == CONTEXT_LENGTH_EXCEEDED and o is not None and o.prompt_tokens and o.limit:
            extra = f" plus maxOutputTokens ({o.max_tokens})" if o.max_tokens is not None else ""
            message = (
                f"The input token count ({o.prompt_tokens}){extra} exceeds the maximum number of "
                f"tokens allowed ({o.limit})."
            )
        return ErrorReply(err.status, dumps(error_obj(err.status, message, err.kind, err.param)), headers)

    # ---- upstream side ----
    def encode_request(self, req: Request, upstream_model: str) -> UpstreamRequest:
        body: dict[str, Any] = {"contents": _contents(req.messages)}
        if req.system:
            body["systemInstruction"] = {"role": "user", "parts": [{"text": t.text} for t in req.system]}
        if req.tools:
            body["tools"] = [
                {
                    "functionDeclarations": [
                        {
                            "name": t.name,
                            **({"description": t.description} if t.description else {}),
                            "parametersJsonSchema": t.parameters,
                        }
                        for t in req.tools
                    ]
                }
            ]
        if req.tool_choice is not None:
            mode = {"auto": "AUTO", "none": "NONE", "required": "ANY", "tool": "ANY"}[req.tool_choice.mode]
            fcc: dict[str, Any] = {"mode": mode}
            if req.tool_choice.mode == "tool" and req.tool_choice.name:
                fcc["allowedFunctionNames"] = [req.tool_choice.name]
            body["toolConfig"] = {"functionCallingConfig": fcc}
        gc: dict[str, Any] = {}
        for key, value in (
            ("temperature", req.temperature),
            ("topP", req.top_p),
            ("topK", req.top_k),
            ("maxOutputTokens", req.max_tokens),
            ("seed", req.seed),
        ):
            if value is not None:
                gc[key] = value
        if req.stop:
            gc["stopSequences"] = req.stop
        rf = req.response_format
        if rf is not None and rf.type != "text":
            gc["responseMimeType"] = "application/json"
            if rf.type == "json_schema" and rf.schema is not None:
                gc["responseJsonSchema"] = rf.schema
        thinking = reasoning.gemini_thinking(req.reasoning, req.extras.gemini.thinking_level)
        if thinking is not None:
            gc["thinkingConfig"] = thinking
        if gc:
            body["generationConfig"] = gc
        if req.extras.gemini.safety_settings:
            body["safetySettings"] = req.extras.gemini.safety_settings
        method = "streamGenerateContent" if req.stream else "generateContent"
        # The model is one percent-encoded path segment, whatever a client wrote (`provider/model` addressing)
        path = upstream_path(
            "/v1beta/models/{model}:{method}", model=upstream_model.removeprefix("models/"), method=method
        )
        return UpstreamRequest(
            path=path,
            body=dumps(body),
            stream=req.stream,
            headers={"content-type": "application/json"},
            query={"alt": "sse"} if req.stream else {},
        )

    def decode_response(self, body: bytes) -> Response:
        try:
            obj = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise GatewayError(ErrorKind.UPSTREAM, "Gemini returned a body that is not JSON") from None
        if not isinstance(obj, dict):
            raise GatewayError(ErrorKind.UPSTREAM, "Gemini returned a body that is not a JSON object")
        if obj.get("error") is not None and not get(obj, "candidates"):  # an error object with a 200
            code = obj["error"].get("code") if isinstance(obj["error"], dict) else None
            raise self.decode_error(code if isinstance(code, int) and 400 <= code < 600 else 502, body, {})
        resp = Response(
            id=str(get(obj, "responseId") or new_id("resp_")),
            model=str(get(obj, "modelVersion") or ""),
            content=[],
            usage=usage_in(get(obj, "usageMetadata")),
            created=int(time.time()),
        )
        cands = get(obj, "candidates")
        if not cands or not isinstance(cands, list) or not isinstance(cands[0], dict):
            feedback = get(obj, "promptFeedback")
            if isinstance(feedback, dict) and get(feedback, "blockReason"):
                resp.stop_reason = StopReason.CONTENT_FILTER
            return resp
        content = get(cands[0], "content")
        parts = get(content, "parts") if isinstance(content, dict) else None
        reader = PartReader(stable_ids=False)
        try:
            for j, part in enumerate(parts if isinstance(parts, list) else []):
                resp.content.extend(reader.read(part, f"candidates[0].content.parts[{j}]", 0, "assistant", j))
        except GatewayError as exc:
            raise GatewayError(ErrorKind.UPSTREAM, f"Gemini response: {exc.message}") from None
        has_call = any(isinstance(b, ToolCall) for b in resp.content)
        resp.stop_reason = finish_in(str(get(cands[0], "finishReason") or "STOP"), has_call)
        return resp

    def stream_decoder(self) -> StreamDecoder:
        return GeminiStreamDecoder()

    def decode_error(self, status: int, body: bytes, headers: Mapping[str, str]) -> GatewayError:
        err: Any = None
        message = ""
        try:
            obj = orjson.loads(body)
            err = obj.get("error") if isinstance(obj, dict) else None
            if isinstance(err, dict):
                message = str(err.get("message") or "")
            elif isinstance(err, str):
                message = err
        except orjson.JSONDecodeError:
            pass
        if not message:
            message = body[:500].decode("utf-8", "replace").strip() or f"Gemini returned HTTP {status}"
        if status == 400 and isinstance(err, dict) and _reason(err) == "API_KEY_INVALID":
            status = 401  # Gemini answers a bad key with 400: it is our credential, not the client's request
        return from_status(status, message, retry_after.from_headers(headers, hint=_retry_delay(err)))


def _reason(err: dict[str, Any]) -> str | None:
    for detail in err.get("details") or ():
        reason = detail.get("reason") if isinstance(detail, dict) else None
        if isinstance(reason, str):
            return reason
    return None


def _thoughts(req: Request) -> bool:
    """Gemini shows thought summaries only when the request set thinkingConfig.includeThoughts."""
    return req.reasoning is not None and req.reasoning.include_thoughts is True


def _contents(messages: list[Message]) -> list[dict[str, Any]]:
    """Canonical messages → Gemini contents: same-role runs merged; tool results first in their user turn."""
    names: dict[str, str] = {}
    out: list[dict[str, Any]] = []
    for i, msg in enumerate(messages):
        results: list[dict[str, Any]] = []
        extra: list[dict[str, Any]] = []
        others: list[Block] = []
        for b in msg.content:
            if isinstance(b, ToolCall):
                names[b.id] = b.name
            if isinstance(b, ToolResult):
                name = b.name or names.get(b.call_id)
                if not name:
                    raise invalid(
                        f"tool result '{b.call_id}' matches no earlier tool call (Gemini needs its name)",
                        param=f"messages[{i}]",
                    )
                response, images = result_response(b)
                results.append({"functionResponse": {"id": b.call_id, "name": name, "response": response}})
                extra.extend(media_part(im) for im in images if isinstance(im, Image))
            else:
                others.append(b)
        parts = results + extra + blocks_to_parts(others, upstream=True)
        if not parts:
            continue
        role = "model" if msg.role == "assistant" else "user"
        if out and out[-1]["role"] == role:
            out[-1]["parts"].extend(parts)
        else:
            out.append({"role": role, "parts": parts})
    return out


# ---------------------------------------------------------------- the protocol's self-description
# (read by the registry in protocols/__init__.py: the server's routes, the HTTP provider's headers)


def _auth(key: str) -> dict[str, str]:
    return {"x-goog-api-key": key}


_CUSTOM_METHODS = {
    "generateContent": RouteKind.CHAT,
    "streamGenerateContent": RouteKind.CHAT,
    "countTokens": RouteKind.COUNT_TOKENS,
}

SPEC = ProtocolSpec(
    name="gemini",
    title="Gemini",
    codec=GeminiCodec(),
    routes=(
        # `models/{model}:{method}` under both API versions (google-genai ≥3 uses /v1)
        ClientRoute("POST", "/v1beta/models/{model}:{method}", _CUSTOM_METHODS),
        ClientRoute("POST", "/v1/models/{model}:{method}", _CUSTOM_METHODS),
        ClientRoute("GET", "/v1beta/models", RouteKind.LIST_MODELS),
        ClientRoute("GET", "/v1/models", RouteKind.LIST_MODELS),  # shared with OpenAI and Anthropic clients
    ),
    upstream=Upstream(auth=_auth),
    # google-genai sends x-goog-api-key (Bearer with OAuth credentials); the REST docs' `?key=`
    client_keys=KeyPresentation(headers=("x-goog-api-key",), query=("key",)),
    marker_headers=("x-goog-api-key",),
    marker_query=("key",),
    list_models=encode_models,
    count_tokens=CountTokens(decode_count_tokens_request, encode_count_tokens),
)
