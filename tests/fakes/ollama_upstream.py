"""A fake Ollama server on loopback, parsed with raw dicts (independent of our codec).

Routes: `POST /api/chat`, `POST /api/generate` (NDJSON unless `"stream": false` — streaming is the
default), `GET /api/tags`, `GET /api/version`. Ollama has no auth; with `api_key` set the fake demands
`Authorization: Bearer <key>` (as a reverse proxy in front of Ollama would) and answers 401 `{"error"}`.
Like Ollama it refuses `think: true` or a level for a model without the thinking capability (here: a name
without "think" or "reason") with 400 `"<model>" does not support thinking`; `think: false` is accepted.
Ollama has no tool_choice; a `format` schema that describes a tool call (structured.call_envelope) constrains the
answer, so the model writes that call as JSON text in `content`, as constrained decoding would.
"""

from __future__ import annotations

import json
import secrets
import time
from typing import Any

from aiohttp import web

from . import vision_rules
from .harness import FakeUpstream
from .script import Plan, View, join_results, plan
from .structured import call_envelope, response_schema

DONE = {"end_turn": "stop", "stop_sequence": "stop", "tool_use": "stop", "max_tokens": "length"}


def view_of_chat(body: dict[str, Any]) -> View:
    v = View()
    for m in body.get("messages") or []:
        role, content = m.get("role"), m.get("content") or ""
        v.images += len(m.get("images") or [])
        if role == "system":
            v.system += content
        elif role == "tool":
            v.tool_result = join_results(v.tool_result, content)
        else:
            v.turns.append(("assistant" if role == "assistant" else "user", content))
            v.tool_result = None
    for t in body.get("tools") or []:
        v.tool_names.append(t["function"]["name"])
        v.tool_schemas[t["function"]["name"]] = t["function"].get("parameters") or {}
    _options(v, body)
    v.response_schema = response_schema(body, "ollama")
    envelope = call_envelope(body.get("format"))
    if envelope is not None:  # output constrained to a tool call: the model makes that call, as JSON text
        v.tool_choice, v.response_schema = envelope[0], None
        v.tool_names = [*v.tool_names, *(n for n in envelope[1] if n not in v.tool_names)]
        v.tool_schemas = {**v.tool_schemas, **envelope[1]}
    return v


def view_of_generate(body: dict[str, Any]) -> View:
    v = View(system=body.get("system") or "", images=len(body.get("images") or []))
    v.turns.append(("user", body.get("prompt") or ""))
    _options(v, body)
    return v


def _options(v: View, body: dict[str, Any]) -> None:
    opts = body.get("options") or {}
    n = opts.get("num_predict")
    v.max_tokens = n if isinstance(n, int) and n >= 0 else None
    stop = opts.get("stop") or []
    v.stop = [stop] if isinstance(stop, str) else list(stop)


class OllamaUpstream(FakeUpstream):
    def __init__(self, api_key: str | None = None) -> None:
        super().__init__()
        self.api_key = api_key

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/api/chat", self.chat)
        app.router.add_post("/api/generate", self.generate)
        app.router.add_get("/api/tags", self.tags)
        app.router.add_get("/api/version", self.version)

    def _auth(self, request: web.Request) -> web.Response | None:
        if self.api_key and request.headers.get("Authorization") != f"Bearer {self.api_key}":
            return web.json_response({"error": "unauthorized"}, status=401)
        return None

    async def tags(self, request: web.Request) -> web.Response:
        return self._auth(request) or web.json_response(
            {
                "models": [
                    {
                        "name": "fake:latest",
                        "model": "fake:latest",
                        "modified_at": "2026-01-01T00:00:00Z",
                        "size": 1,
                        "digest": "0" * 64,
                        "details": {
                            "format": "gguf",
                            "family": "fake",
                            "families": ["fake"],
                            "parameter_size": "1M",
                            "quantization_level": "Q8_0",
                        },
                    }
                ]
            }
        )

    async def version(self, request: web.Request) -> web.Response:
        return web.json_response({"version": "0.12.0"})

    async def chat(self, request: web.Request) -> web.StreamResponse:
        return await self._serve(request, chat=True)

    async def generate(self, request: web.Request) -> web.StreamResponse:
        return await self._serve(request, chat=False)

    async def _serve(self, request: web.Request, chat: bool) -> web.StreamResponse:
        denied = self._auth(request)
        if denied is not None:
            return denied
        try:
            body = await request.json()
        except ValueError:
            return web.json_response({"error": "invalid JSON"}, status=400)
        if not isinstance(body, dict) or not body.get("model"):
            return web.json_response({"error": "model is required"}, status=400)
        think, name = body.get("think"), str(body["model"])
        if think not in (None, False) and "think" not in name and "reason" not in name:
            return web.json_response({"error": f'"{name}" does not support thinking'}, status=400)
        if vision_rules.refuses(body):
            status, message = vision_rules.OLLAMA
            return web.json_response({"error": message}, status=status)
        p = plan(view_of_chat(body) if chat else view_of_generate(body))
        if p.tool_call is not None and call_envelope(body.get("format")) is not None:
            name, args = p.tool_call  # constrained decoding writes the call into the content
            p = Plan(
                chunks=[json.dumps({"name": name, "arguments": args})],
                input_tokens=p.input_tokens,
                output_tokens=p.output_tokens,
            )
        if p.fail_status is not None:
            headers = {"Retry-After": "1"} if p.fail_status == 429 else None
            return web.json_response(
                {"error": f"scripted failure {p.fail_status}"}, status=p.fail_status, headers=headers
            )
        model = body["model"]
        created = time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime())

        def line(
            content: str = "",
            calls: list[tuple[str, dict]] | None = None,
            final: bool = False,
            thinking: str | None = None,
        ) -> dict:
            obj: dict[str, Any] = {"model": model, "created_at": created}
            if chat:
                msg: dict[str, Any] = {"role": "assistant", "content": content}
                if thinking:
                    msg["thinking"] = thinking
                if calls:  # as current Ollama: an id and the call's index within the reply
                    msg["tool_calls"] = [
                        {
                            "id": f"call_{secrets.token_hex(4)}",
                            "function": {"index": n, "name": name, "arguments": args},
                        }
                        for n, (name, args) in enumerate(calls)
                    ]
                obj["message"] = msg
            else:
                obj["response"] = content
            obj["done"] = final
            if final:
                obj.update(
                    done_reason=DONE.get(p.stop_reason, "stop"),
                    total_duration=1000,
                    load_duration=10,
                    prompt_eval_count=p.input_tokens,
                    prompt_eval_duration=100,
                    eval_count=p.output_tokens,
                    eval_duration=500,
                )
            return obj

        thought = "Thinking it over." if think not in (None, False) and chat else None
        if body.get("stream") is False:
            if p.tool_call is not None and chat:
                return web.json_response(line(calls=p.calls, final=True, thinking=thought))
            return web.json_response(line(p.text, final=True, thinking=thought))
        return await self.write_stream(request, self._frames(p, line, chat, thought), "application/x-ndjson")

    @staticmethod
    def _frames(p: Plan, line: Any, chat: bool, thought: str | None = None) -> list[tuple[float, bytes]]:
        docs = [line(calls=p.calls)] if p.tool_call is not None and chat else [line(c) for c in p.chunks]
        if thought:
            docs.insert(0, line(thinking=thought))
        frames: list[tuple[float, bytes]] = []
        for i, doc in enumerate(docs):
            if p.fail_midstream and i == 2:
                frames.append((p.delay, json.dumps({"error": "scripted midstream failure"}).encode() + b"\n"))
                return frames
            frames.append((p.delay if i else 0.0, json.dumps(doc).encode() + b"\n"))
        frames.append((p.delay, json.dumps(line(final=True)).encode() + b"\n"))
        return frames
