"""Google Gemini `generateContent` / `streamGenerateContent?alt=sse` / `countTokens` ↔ canonical model.

Client side: the model and the method come from the path (`/v1beta/models/{model}:{method}`, also
`/v1/…`); keys are accepted camelCase or snake_case. Upstream side: `/v1beta/models/{m}:generateContent`
or `:streamGenerateContent?alt=sse` on the root base URL. Part-level helpers live in `gemini_parts`.

Lossy:
- functionCall without `id` gets a stable synthetic id `call_<name>_<turn>_<n>` (client side) or a random `call_…` (upstream responses); functionResponse without `id` is matched to the latest model turn's calls by name, in order.
- functionResponse.response `{"output"|"result"|"error": <string>}` becomes the plain tool-result text (`error` sets is_error); any other object becomes its JSON text; encoding back writes `{"output": text}` / `{"error": text}`, or the object itself when the text is a JSON object (so `result` comes back as `output`).
- thoughtSignature is kept as `gemini:<sig>` on Reasoning.signature (on ToolCall.signature for call parts); a signature on a plain text part becomes an empty signed Reasoning after the Text and folds back onto that text part; non-Gemini signatures are never sent to Gemini (Anthropic thinking signatures do not survive a Gemini client).
- Unsigned or foreign reasoning is dropped toward a Gemini upstream; redacted/encrypted reasoning is dropped both ways.
- `parameters` / `responseSchema` (OpenAPI subset) are converted to JSON Schema (`nullable` → type union, `propertyOrdering` dropped); upstream always sends `parametersJsonSchema` / `responseJsonSchema`.
- Only functionDeclarations tools are kept; googleSearch, codeExecution, urlContext and other hosted tools are ignored.
- executableCode / codeExecutionResult / videoMetadata parts and inlineData other than image/* or video/* are not representable (the latter is a 400).
- allowedFunctionNames with mode ANY narrows the tool list (a single name becomes tool choice "tool"); VALIDATED mode is treated as AUTO.
- safetySettings pass through only to a Gemini upstream (Request.extra); cachedContent, presencePenalty, frequencyPenalty, responseLogprobs, mediaResolution, speechConfig and labels are ignored.
- thinkingLevel maps to reasoning effort; effort without a budget maps to thinkingBudget 128/1024/2048/4096/8192/16384 (minimal…max).
- finishReason cannot name a matched stop sequence or a tool call: STOP covers end_turn/stop_sequence/tool_use (tool_use is inferred from functionCall parts); the SAFETY family maps to content_filter.
- candidateCount > 1 is rejected (400); responses carry one candidate.
- Usage: candidatesTokenCount excludes thoughtsTokenCount (inclusive counts are detected by the sum); toolUsePromptTokenCount is folded into input tokens.
"""

from __future__ import annotations

import email.utils
import time
from typing import Any, Mapping

import orjson

from ..canonical import (
    BlockStart, BlockStop, Event, Image, Message, MessageDelta, MessageStart, MessageStop, ReasoningConfig,
    ReasoningDelta, Request, ResponseFormat, Response, SignatureDelta, StopReason, StreamError, Text,
    TextDelta, Tool, ToolArgsDelta, ToolCall, ToolChoice, ToolResult, Usage, link_tool_results,
)
from ..canonical import Reasoning as ReasoningBlock
from ..errors import DEFAULT_STATUS, ErrorKind, GatewayError, from_status, invalid
from .base import Codec, ErrorReply, ModelInfo, RequestContext, StreamDecoder, StreamEncoder, UpstreamRequest
from .common import check, dumps, loads_body, new_id
from .gemini_parts import (
    FINISH_OUT, KIND_NAMES, SIG_PREFIX, PartReader, args_object, blocks_to_parts, fld, finish_in, get,
    gemini_sig, media_part, result_response, status_name, to_json_schema, usage_in, usage_out,
)
from .sse import SSEParser, sse_event

_METHODS = ("generateContent", "streamGenerateContent")
_EFFORT_BUDGET = {"minimal": 128, "low": 1024, "medium": 2048, "high": 4096, "xhigh": 8192, "max": 16384}
_MODES = {"AUTO": "auto", "ANY": "required", "NONE": "none", "VALIDATED": "auto", "MODE_UNSPECIFIED": "auto"}


# ---------------------------------------------------------------- client side: request


def _decode_generate(d: dict[str, Any], model: str, stream: bool, path: str) -> Request:
    at = (lambda k: f"{path}.{k}") if path else (lambda k: k)  # noqa: E731
    contents = fld(d, "contents", list, path, required=True)
    reader = PartReader()
    messages: list[Message] = []
    for i, content in enumerate(contents):
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
    req = Request(model=model, messages=messages, stream=stream)

    si = get(d, "systemInstruction")
    if isinstance(si, str):
        req.system = [Text(text=si)]
    elif si is not None:
        check(si, dict, at("systemInstruction"))
        sp = at("systemInstruction")
        for j, part in enumerate(fld(si, "parts", list, sp) or []):
            check(part, dict, f"{sp}.parts[{j}]")
            text = fld(part, "text", str, f"{sp}.parts[{j}]")
            if text:
                req.system.append(Text(text=text))

    for i, tool in enumerate(fld(d, "tools", list, path) or []):
        tp = f"{at('tools')}[{i}]"
        check(tool, dict, tp)
        for j, decl in enumerate(fld(tool, "functionDeclarations", list, tp) or []):
            dp = f"{tp}.functionDeclarations[{j}]"
            check(decl, dict, dp)
            name = fld(decl, "name", str, dp, required=True)
            schema = fld(decl, "parametersJsonSchema", dict, dp)
            if schema is None:
                params = fld(decl, "parameters", dict, dp)
                schema = to_json_schema(params) if params is not None else None
            t = Tool(name=name, description=fld(decl, "description", str, dp))
            if schema is not None:
                t.parameters = schema
            req.tools.append(t)

    tc = fld(d, "toolConfig", dict, path)
    fcc = fld(tc, "functionCallingConfig", dict, at("toolConfig")) if tc else None
    if fcc:
        fp = f"{at('toolConfig')}.functionCallingConfig"
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

    gc = fld(d, "generationConfig", dict, path)
    if gc:
        _decode_generation_config(req, gc, at("generationConfig"))
    safety = get(d, "safetySettings")
    if isinstance(safety, list) and safety:
        req.extra["gemini_safety_settings"] = safety
    return req


def _decode_generation_config(req: Request, gc: dict[str, Any], gp: str) -> None:
    req.temperature = fld(gc, "temperature", float, gp)
    req.top_p = fld(gc, "topP", float, gp)
    top_k = fld(gc, "topK", float, gp)  # google-genai sends topK as a float (3.0)
    req.top_k = int(top_k) if top_k is not None else None
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
        req.reasoning = ReasoningConfig(
            enabled=budget != 0, budget_tokens=budget if budget and budget > 0 else None,
            effort=level.lower() if level and level.upper() != "THINKING_LEVEL_UNSPECIFIED" else None,
            include_thoughts=fld(thinking, "includeThoughts", bool, tp))


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
        item: dict[str, Any] = {"name": f"models/{m.id}", "version": "001", "displayName": m.id,
                                "supportedGenerationMethods": ["generateContent", "streamGenerateContent",
                                                               "countTokens"]}
        if m.context_length:
            item["inputTokenLimit"] = m.context_length
            item["outputTokenLimit"] = m.context_length
        out.append(item)
    return dumps({"models": out})


# ---------------------------------------------------------------- client side: responses


def _chunk(parts: list[dict[str, Any]], rid: str, model: str, finish: str | None = None,
           usage: Usage | None = None) -> dict[str, Any]:
    cand: dict[str, Any] = {"content": {"role": "model", "parts": parts}, "index": 0}
    if finish:
        cand["finishReason"] = finish
    out: dict[str, Any] = {"candidates": [cand]}
    if usage is not None:
        out["usageMetadata"] = usage_out(usage)
    out["modelVersion"] = model
    out["responseId"] = rid
    return out


def _error_obj(status: int, message: str, kind: ErrorKind | None, param: str | None = None) -> dict[str, Any]:
    name = status_name(status)
    if kind in KIND_NAMES and status in (401, 403, 429, 504):
        name = KIND_NAMES[kind]  # type: ignore[index]
    err: dict[str, Any] = {"code": status, "message": message, "status": name}
    if param:
        err["details"] = [{"@type": "type.googleapis.com/google.rpc.BadRequest",
                           "fieldViolations": [{"field": param, "description": message}]}]
    return {"error": err}


class GeminiStreamEncoder(StreamEncoder):
    """Canonical events → `data: {GenerateContentResponse}` frames with only the new parts."""

    __slots__ = ("rid", "model", "calls", "stop", "usage", "sigs", "texts")

    def __init__(self) -> None:
        self.rid = new_id("resp_")
        self.model = ""
        self.calls: dict[int, ToolCall] = {}
        self.sigs: dict[int, str] = {}
        self.texts: set[int] = set()  # reasoning blocks that had text (their signature part is a thought)
        self.stop = StopReason.END_TURN
        self.usage = Usage()

    def _frame(self, parts: list[dict[str, Any]], finish: str | None = None, usage: Usage | None = None) -> bytes:
        return sse_event(dumps(_chunk(parts, self.rid, self.model, finish, usage)))

    def feed(self, ev: Event) -> bytes:
        if isinstance(ev, TextDelta):
            return self._frame([{"text": ev.text}]) if ev.text else b""
        if isinstance(ev, ReasoningDelta):
            if not ev.text:
                return b""
            self.texts.add(ev.index)
            return self._frame([{"text": ev.text, "thought": True}])
        if isinstance(ev, ToolArgsDelta):
            call = self.calls.get(ev.index)
            if call is not None:
                call.arguments += ev.json
            return b""
        if isinstance(ev, BlockStart):
            if isinstance(ev.block, ToolCall):
                self.calls[ev.index] = ToolCall(id=ev.block.id, name=ev.block.name, arguments=ev.block.arguments,
                                                signature=ev.block.signature)
            elif isinstance(ev.block, ReasoningBlock) and ev.block.text:
                self.texts.add(ev.index)
                return self._frame([{"text": ev.block.text, "thought": True}])
            elif isinstance(ev.block, Text) and ev.block.text:
                return self._frame([{"text": ev.block.text}])
            return b""
        if isinstance(ev, SignatureDelta):
            if ev.index in self.calls:
                self.calls[ev.index].signature = ev.signature
            else:
                self.sigs[ev.index] = ev.signature
            return b""
        if isinstance(ev, BlockStop):
            call = self.calls.pop(ev.index, None)
            if call is not None:
                part: dict[str, Any] = {"functionCall": {"id": call.id, "name": call.name,
                                                         "args": args_object(call.arguments)}}
                if call.signature:
                    part["thoughtSignature"] = call.signature
                return self._frame([part])
            sig = gemini_sig(self.sigs.pop(ev.index, None))
            if sig:
                part = {"text": "", "thoughtSignature": sig}
                if ev.index in self.texts:
                    part["thought"] = True
                return self._frame([part])
            return b""
        if isinstance(ev, MessageStart):
            self.model = ev.model
            if ev.id:
                self.rid = ev.id
            if ev.usage is not None:
                self.usage = ev.usage
            return b""
        if isinstance(ev, MessageDelta):
            if ev.stop_reason is not None:
                self.stop = ev.stop_reason
            if ev.usage is not None:
                self.usage = ev.usage
            return b""
        if isinstance(ev, MessageStop):
            return self._frame([{"text": ""}], FINISH_OUT[self.stop], self.usage)
        if isinstance(ev, StreamError):
            try:
                kind: ErrorKind | None = ErrorKind(ev.kind)
            except ValueError:
                kind = None
            status = DEFAULT_STATUS.get(kind, 500) if kind else 500  # type: ignore[arg-type]
            return sse_event(dumps(_error_obj(status, ev.message, kind)))
        return b""


# ---------------------------------------------------------------- upstream side: stream decoder


class GeminiStreamDecoder(StreamDecoder):
    """`data: {GenerateContentResponse}` frames → canonical events; synthesises block start/stop."""

    __slots__ = ("_sse", "_started", "_open", "_index", "_finish", "_usage", "_done", "_tool", "_id", "_model")

    def __init__(self) -> None:
        self._sse = SSEParser()
        self._started = False
        self._open: str | None = None  # "text" | "reasoning"
        self._index = -1
        self._finish: str | None = None
        self._usage = Usage()
        self._done = False
        self._tool = False

    def feed(self, chunk: bytes) -> list[Event]:
        out: list[Event] = []
        for msg in self._sse.feed(chunk):
            if not self._done:
                self._message(msg.data, out)
        return out

    def close(self) -> list[Event]:
        out: list[Event] = []
        for msg in self._sse.flush():
            if not self._done:
                self._message(msg.data, out)
        if self._done:
            return out
        if self._finish is not None:
            self._end(out)
            return out
        self._done = True
        out.append(StreamError(kind=ErrorKind.UPSTREAM.value, message="Gemini stream ended before finishReason"))
        return out

    def _close_block(self, out: list[Event]) -> None:
        if self._open is not None:
            out.append(BlockStop(index=self._index))
            self._open = None

    def _open_block(self, kind: str, out: list[Event]) -> None:
        if self._open != kind:
            self._close_block(out)
            self._index += 1
            self._open = kind
            out.append(BlockStart(index=self._index, block=Text(text="") if kind == "text" else ReasoningBlock()))

    def _end(self, out: list[Event]) -> None:
        self._close_block(out)
        out.append(MessageDelta(stop_reason=finish_in(self._finish or "STOP", self._tool), usage=self._usage))
        out.append(MessageStop())
        self._done = True

    def _message(self, data: str, out: list[Event]) -> None:
        try:
            obj = orjson.loads(data)
        except orjson.JSONDecodeError:
            self._done = True
            out.append(StreamError(kind=ErrorKind.UPSTREAM.value, message="Gemini sent a malformed stream chunk"))
            return
        if not isinstance(obj, dict):
            return
        err = obj.get("error")
        if err is not None:
            self._done = True
            code = err.get("code") if isinstance(err, dict) else None
            msg = err.get("message") if isinstance(err, dict) else str(err)
            kind = from_status(code if isinstance(code, int) else 500, "").kind
            out.append(StreamError(kind=kind.value, message=str(msg or "upstream error")))
            return
        if not self._started:
            self._started = True
            self._id = get(obj, "responseId") or new_id("resp_")
            self._model = get(obj, "modelVersion") or ""
            out.append(MessageStart(id=str(self._id), model=str(self._model), created=int(time.time())))
        if get(obj, "usageMetadata") is not None:
            self._usage = usage_in(get(obj, "usageMetadata"))
        cands = get(obj, "candidates")
        if not cands:
            feedback = get(obj, "promptFeedback")
            if isinstance(feedback, dict) and get(feedback, "blockReason"):
                self._finish = "SAFETY"
                self._end(out)
            elif self._finish is not None:
                self._end(out)
            return
        cand = cands[0] if isinstance(cands, list) and isinstance(cands[0], dict) else {}
        content = get(cand, "content")
        parts = get(content, "parts") if isinstance(content, dict) else None
        for part in parts if isinstance(parts, list) else ():
            if isinstance(part, dict):
                self._part(part, out)
        finish = get(cand, "finishReason")
        if isinstance(finish, str):
            self._finish = finish
            self._close_block(out)
            if get(obj, "usageMetadata") is not None:
                self._end(out)

    def _part(self, part: dict[str, Any], out: list[Event]) -> None:
        sig = get(part, "thoughtSignature")
        sig = sig if isinstance(sig, str) and sig else None
        fc = get(part, "functionCall")
        if isinstance(fc, dict):
            self._close_block(out)
            self._index += 1
            self._tool = True
            cid = get(fc, "id") or new_id("call_")
            out.append(BlockStart(index=self._index, block=ToolCall(id=str(cid), name=str(get(fc, "name") or ""),
                                                                     arguments="", signature=sig)))
            out.append(ToolArgsDelta(index=self._index, json=orjson.dumps(get(fc, "args") or {}).decode()))
            out.append(BlockStop(index=self._index))
            return
        text = get(part, "text")
        if not isinstance(text, str):
            text = ""
        if get(part, "thought") is True:
            if text or sig:
                self._open_block("reasoning", out)
            if text:
                out.append(ReasoningDelta(index=self._index, text=text))
            if sig:
                out.append(SignatureDelta(index=self._index, signature=SIG_PREFIX + sig))
                self._close_block(out)
            return
        if text:
            self._open_block("text", out)
            out.append(TextDelta(index=self._index, text=text))
        if sig:
            self._open_block("reasoning", out)
            out.append(SignatureDelta(index=self._index, signature=SIG_PREFIX + sig))
            self._close_block(out)


# ---------------------------------------------------------------- the codec


def _retry_after(headers: Mapping[str, str], err: Any) -> float | None:
    raw = headers.get("retry-after") or headers.get("Retry-After")
    if raw:
        try:
            return float(raw)
        except ValueError:
            parsed = email.utils.parsedate_to_datetime(raw) if raw else None
            if parsed is not None:
                return max(0.0, parsed.timestamp() - time.time())
    for detail in (err.get("details") or []) if isinstance(err, dict) else ():
        delay = detail.get("retryDelay") if isinstance(detail, dict) else None
        if isinstance(delay, str) and delay.endswith("s"):
            try:
                return float(delay[:-1])
            except ValueError:
                pass
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
        parts = blocks_to_parts(resp.content, upstream=False)
        return dumps(_chunk(parts, resp.id, resp.model, FINISH_OUT[resp.stop_reason], resp.usage))

    def stream_encoder(self, req: Request) -> StreamEncoder:
        return GeminiStreamEncoder()

    def encode_error(self, err: GatewayError) -> ErrorReply:
        headers: dict[str, str] = {}
        if err.retry_after is not None:
            headers["retry-after"] = str(max(0, int(err.retry_after + 0.999)))
        return ErrorReply(err.status, dumps(_error_obj(err.status, err.message, err.kind, err.param)), headers)

    # ---- upstream side ----
    def encode_request(self, req: Request, upstream_model: str) -> UpstreamRequest:
        body: dict[str, Any] = {"contents": _contents(req.messages)}
        if req.system:
            body["systemInstruction"] = {"role": "user", "parts": [{"text": t.text} for t in req.system]}
        if req.tools:
            body["tools"] = [{"functionDeclarations": [
                {"name": t.name, **({"description": t.description} if t.description else {}),
                 "parametersJsonSchema": t.parameters} for t in req.tools]}]
        if req.tool_choice is not None:
            mode = {"auto": "AUTO", "none": "NONE", "required": "ANY", "tool": "ANY"}[req.tool_choice.mode]
            fcc: dict[str, Any] = {"mode": mode}
            if req.tool_choice.mode == "tool" and req.tool_choice.name:
                fcc["allowedFunctionNames"] = [req.tool_choice.name]
            body["toolConfig"] = {"functionCallingConfig": fcc}
        gc: dict[str, Any] = {}
        for key, value in (("temperature", req.temperature), ("topP", req.top_p), ("topK", req.top_k),
                           ("maxOutputTokens", req.max_tokens), ("seed", req.seed)):
            if value is not None:
                gc[key] = value
        if req.stop:
            gc["stopSequences"] = req.stop
        rf = req.response_format
        if rf is not None and rf.type != "text":
            gc["responseMimeType"] = "application/json"
            if rf.type == "json_schema" and rf.schema is not None:
                gc["responseJsonSchema"] = rf.schema
        r = req.reasoning
        if r is not None:
            if not r.enabled:
                gc["thinkingConfig"] = {"thinkingBudget": 0}
            else:
                budget = r.budget_tokens or _EFFORT_BUDGET.get(r.effort or "", -1)
                gc["thinkingConfig"] = {"thinkingBudget": budget,
                                        "includeThoughts": True if r.include_thoughts is None else r.include_thoughts}
        if gc:
            body["generationConfig"] = gc
        if req.extra.get("gemini_safety_settings"):
            body["safetySettings"] = req.extra["gemini_safety_settings"]
        method = "streamGenerateContent" if req.stream else "generateContent"
        return UpstreamRequest(path=f"/v1beta/models/{upstream_model}:{method}", body=dumps(body), stream=req.stream,
                               headers={"content-type": "application/json"},
                               query={"alt": "sse"} if req.stream else {})

    def decode_response(self, body: bytes) -> Response:
        try:
            obj = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise GatewayError(ErrorKind.UPSTREAM, "Gemini returned a body that is not JSON") from None
        if not isinstance(obj, dict):
            raise GatewayError(ErrorKind.UPSTREAM, "Gemini returned a body that is not a JSON object")
        resp = Response(id=str(get(obj, "responseId") or new_id("resp_")), model=str(get(obj, "modelVersion") or ""),
                        content=[], usage=usage_in(get(obj, "usageMetadata")), created=int(time.time()))
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
        return from_status(status, message, _retry_after(headers, err))


def _reason(err: dict[str, Any]) -> str | None:
    for detail in err.get("details") or ():
        if isinstance(detail, dict) and isinstance(detail.get("reason"), str):
            return detail["reason"]
    return None


def _contents(messages: list[Message]) -> list[dict[str, Any]]:
    """Canonical messages → Gemini contents: same-role runs merged; tool results first in their user turn."""
    names: dict[str, str] = {}
    out: list[dict[str, Any]] = []
    for i, msg in enumerate(messages):
        results: list[dict[str, Any]] = []
        extra: list[dict[str, Any]] = []
        others = []
        for b in msg.content:
            if isinstance(b, ToolCall):
                names[b.id] = b.name
            if isinstance(b, ToolResult):
                name = b.name or names.get(b.call_id)
                if not name:
                    raise invalid(f"tool result '{b.call_id}' matches no earlier tool call (Gemini needs its name)",
                                  param=f"messages[{i}]")
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
