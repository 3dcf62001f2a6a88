"""A fake Gemini API (Google AI Studio flavour) on loopback, parsed with raw dicts (independent of our codec).

Routes, under both `/v1beta` and `/v1`: `POST models/{model}:generateContent`,
`:streamGenerateContent` (SSE with `?alt=sse`, a JSON array without), `:countTokens`, `GET models`.
Auth like the real service: `x-goog-api-key` header or `?key=`; a missing key is 403 PERMISSION_DENIED,
a wrong one 400 INVALID_ARGUMENT with ErrorInfo reason API_KEY_INVALID. Like the API it refuses a
thinkingConfig that asks for thinking on a model that cannot think (name contains "nothink" or "2.0") and
thinkingBudget 0 on a model that only thinks (name contains "pro"); a "gemini-3" model signs its function
calls and refuses a history that lost the signatures (thinking_rules.py).
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from . import vision_rules
from .harness import FakeUpstream
from .script import Plan, View, join_results, plan
from .structured import forced_tool, response_schema
from .thinking_rules import Signer, call_text, gemini_signature_rule
from .tool_rules import gemini_tool_pairing

STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
FINISH = {"end_turn": "STOP", "stop_sequence": "STOP", "tool_use": "STOP", "max_tokens": "MAX_TOKENS"}


def g(obj: Any, camel: str) -> Any:
    """Read a camelCase key or its snake_case twin (the real API accepts both)."""
    if not isinstance(obj, dict):
        return None
    if camel in obj:
        return obj[camel]
    return obj.get("".join("_" + c.lower() if c.isupper() else c for c in camel))


def error_body(code: int, message: str, reason: str | None = None) -> dict[str, Any]:
    err: dict[str, Any] = {"code": code, "message": message, "status": STATUS.get(code, "UNKNOWN")}
    if reason:
        err["details"] = [
            {
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": reason,
                "domain": "googleapis.com",
            }
        ]
    return {"error": err}


def view_of(body: dict[str, Any]) -> View:
    v = View()
    si = g(body, "systemInstruction")
    if isinstance(si, dict):
        v.system = "".join(p.get("text", "") for p in g(si, "parts") or [] if isinstance(p, dict))
    for content in g(body, "contents") or []:
        role = "assistant" if content.get("role") == "model" else "user"
        text, result = "", None
        for p in g(content, "parts") or []:
            if "text" in p and not p.get("thought"):
                text += p["text"]
            if g(p, "inlineData") is not None or g(p, "fileData") is not None:
                v.images += 1
            fr = g(p, "functionResponse")
            if fr is not None:
                resp = fr.get("response") or {}
                out = resp.get("output", resp.get("result")) if isinstance(resp, dict) else None
                result = join_results(result, out if isinstance(out, str) else json.dumps(resp))
        v.turns.append((role, text))
        v.tool_result = result if role == "user" else None
    for tool in g(body, "tools") or []:
        for decl in g(tool, "functionDeclarations") or []:
            v.tool_names.append(decl["name"])
            v.tool_schemas[decl["name"]] = g(decl, "parametersJsonSchema") or g(decl, "parameters") or {}
    gc = g(body, "generationConfig") or {}
    v.max_tokens = g(gc, "maxOutputTokens")
    v.stop = list(g(gc, "stopSequences") or [])
    v.response_schema, v.tool_choice = response_schema(body, "gemini"), forced_tool(body, "gemini")
    return v


class GeminiUpstream(FakeUpstream):
    def __init__(self, api_key: str = "gem-key", model_version: str = "gemini-fake-001") -> None:
        super().__init__()
        self.api_key = api_key
        self.model_version = model_version
        self.signer = Signer()  # thoughtSignatures a "gemini-3" model issues and checks (thinking_rules.py)

    def routes(self, app: web.Application) -> None:
        for prefix in ("/v1beta", "/v1"):
            app.router.add_post(prefix + "/models/{tail}", self.call)
            app.router.add_get(prefix + "/models", self.models)

    def _auth(self, request: web.Request) -> web.Response | None:
        key = request.headers.get("x-goog-api-key") or request.query.get("key")
        if not key:
            return web.json_response(
                error_body(
                    403,
                    "Method doesn't allow unregistered callers (callers without established identity).",
                    "API_KEY_SERVICE_BLOCKED",
                ),
                status=403,
            )
        if key != self.api_key:
            return web.json_response(
                error_body(400, "API key not valid. Please pass a valid API key.", "API_KEY_INVALID"),
                status=400,
            )
        return None

    async def models(self, request: web.Request) -> web.Response:
        denied = self._auth(request)
        if denied is not None:
            return denied
        return web.json_response(
            {
                "models": [
                    {
                        "name": "models/gemini-fake",
                        "displayName": "Gemini Fake",
                        "supportedGenerationMethods": ["generateContent", "countTokens"],
                    }
                ]
            }
        )

    def _response(
        self, parts: list[dict[str, Any]], p: Plan, finish: str | None, final: bool
    ) -> dict[str, Any]:
        cand: dict[str, Any] = {"content": {"role": "model", "parts": parts}, "index": 0}
        usage: dict[str, Any] = {"promptTokenCount": p.input_tokens}
        if p.cached_tokens:
            usage["cachedContentTokenCount"] = p.cached_tokens
        if finish:
            cand["finishReason"] = finish
        if final:
            total = p.input_tokens + p.output_tokens + p.reasoning_tokens
            usage.update(candidatesTokenCount=p.output_tokens, totalTokenCount=total)
            if p.reasoning_tokens:
                usage["thoughtsTokenCount"] = p.reasoning_tokens
        else:
            usage["totalTokenCount"] = p.input_tokens
        return {
            "candidates": [cand],
            "usageMetadata": usage,
            "modelVersion": self.model_version,
            "responseId": "fake-resp-1",
        }

    async def call(self, request: web.Request) -> web.StreamResponse:
        denied = self._auth(request)
        if denied is not None:
            return denied
        model, _, method = request.match_info["tail"].partition(":")
        try:
            body = await request.json()
        except ValueError:
            return web.json_response(error_body(400, "Invalid JSON payload received."), status=400)
        if method not in ("generateContent", "streamGenerateContent", "countTokens"):
            return web.json_response(
                error_body(404, f"Method {method!r} not found for model {model!r}"), status=404
            )
        thinking = g(g(body, "generationConfig") or {}, "thinkingConfig")
        if isinstance(thinking, dict) and thinking:
            off = g(thinking, "thinkingBudget") == 0
            if not off and ("nothink" in model or "2.0" in model):
                return web.json_response(
                    error_body(400, "Thinking is not supported for this model."), status=400
                )
            if off and "pro" in model:
                return web.json_response(
                    error_body(400, "Budget 0 is invalid. This model only works in thinking mode."),
                    status=400,
                )
        inner = g(body, "generateContentRequest")
        unpaired = gemini_tool_pairing(g(inner if isinstance(inner, dict) else body, "contents") or [])
        if unpaired is not None:
            return web.json_response(error_body(400, unpaired), status=400)
        unsigned = gemini_signature_rule(
            model, g(inner if isinstance(inner, dict) else body, "contents") or [], self.signer
        )
        if unsigned is not None:
            return web.json_response(error_body(400, unsigned), status=400)
        if vision_rules.refuses({**body, "model": model}):
            status, message = vision_rules.gemini(model)
            return web.json_response(error_body(status, message), status=status)
        p = plan(view_of(inner if isinstance(inner, dict) else body))
        if method == "countTokens":
            return web.json_response({"totalTokens": p.input_tokens})
        if p.fail_status is not None:
            headers = {"Retry-After": "1"} if p.fail_status == 429 else None
            return web.json_response(
                error_body(p.fail_status, f"scripted failure {p.fail_status}"),
                status=p.fail_status,
                headers=headers,
            )
        finish = FINISH.get(p.stop_reason, "STOP")
        if p.tool_call is not None:
            chunks = [[{"functionCall": {"name": name, "args": args}} for name, args in p.calls]]
            if "gemini-3" in model:  # like Gemini 3: a signature on the first call of the response only
                chunks[0][0]["thoughtSignature"] = self.signer.sign(call_text(chunks[0][0]["functionCall"]))
        else:
            chunks = [[{"text": c}] for c in p.chunks] or [[{"text": ""}]]
        if method == "generateContent":
            parts = [part for c in chunks for part in c]
            if p.tool_call is None:
                parts = [{"text": p.text}]
            return web.json_response(self._response(parts, p, finish, True))
        docs = [
            self._response(c, p, finish if i == len(chunks) - 1 else None, i == len(chunks) - 1)
            for i, c in enumerate(chunks)
        ]
        if request.query.get("alt") != "sse":  # without alt=sse the API streams one JSON array
            return web.json_response(docs)
        frames: list[tuple[float, bytes]] = []
        for i, doc in enumerate(docs):
            if p.fail_midstream and i == 2:
                break
            frames.append((p.delay if i else 0.0, b"data: " + json.dumps(doc).encode() + b"\r\n\r\n"))
        if p.fail_midstream:
            frames.append(
                (
                    p.delay,
                    b"data: "
                    + json.dumps(error_body(500, "scripted midstream failure")).encode()
                    + b"\r\n\r\n",
                )
            )
        return await self.write_stream(request, frames, "text/event-stream")
