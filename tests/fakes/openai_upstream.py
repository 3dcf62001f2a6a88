"""A fake OpenAI-compatible upstream: `/v1/chat/completions`, `/v1/responses`, `/v1/models` with Bearer auth.

Parses the wire request with raw dicts (deliberately independent of smolgate's codecs), builds a `View`,
runs `script.plan` and renders the `Plan` exactly as OpenAI does: Chat chunks with `data: [DONE]` and the
usage chunk only when `stream_options.include_usage`, Responses with the full event sequence.
"""

from __future__ import annotations

import json
import time
from typing import Any

from aiohttp import web

from . import responses_rules, vision_rules
from .harness import FakeUpstream
from .script import Plan, View, join_results, plan
from .structured import forced_tool, response_schema

MODELS = ["gpt-fake", "gpt-fake-mini"]
_ERR_TYPES = {
    400: "invalid_request_error",
    401: "invalid_request_error",
    403: "permission_error",
    404: "invalid_request_error",
    429: "rate_limit_error",
}


def _err(
    status: int, message: str, code: str | None = None, headers: dict[str, str] | None = None
) -> web.Response:
    body = {
        "error": {
            "message": message,
            "type": _ERR_TYPES.get(status, "server_error"),
            "param": None,
            "code": code,
        }
    }
    return web.json_response(body, status=status, headers=headers)


def _fail(p: Plan) -> web.Response:
    assert p.fail_status is not None
    code = "rate_limit_exceeded" if p.fail_status == 429 else None
    return _err(
        p.fail_status,
        f"scripted failure {p.fail_status}",
        code,
        {"Retry-After": "1"} if p.fail_status == 429 else None,
    )


def _sse(obj: Any, event: str | None = None) -> bytes:
    data = json.dumps(obj, separators=(",", ":")).encode()
    return (f"event: {event}\n".encode() if event else b"") + b"data: " + data + b"\n\n"


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            p.get("text", "") for p in content if isinstance(p, dict) and isinstance(p.get("text"), str)
        )
    return ""


def chat_view(body: dict[str, Any]) -> View:
    v = View()
    sys_parts = []
    for m in body.get("messages", []):
        role, content = m.get("role"), m.get("content")
        if role in ("system", "developer"):
            sys_parts.append(_text(content))
        elif role in ("user", "assistant"):
            v.turns.append((role, _text(content)))
            if isinstance(content, list):
                v.images += sum(1 for p in content if isinstance(p, dict) and p.get("type") == "image_url")
            v.tool_result = None
        elif role == "tool":
            v.tool_result = join_results(v.tool_result, _text(content))
    v.system = "\n\n".join(sys_parts)
    v.tool_names = [t["function"]["name"] for t in body.get("tools", []) if t.get("type") == "function"]
    v.tool_schemas = {
        t["function"]["name"]: t["function"].get("parameters") or {}
        for t in body.get("tools", [])
        if t.get("type") == "function"
    }
    v.max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
    stop = body.get("stop")
    v.stop = [stop] if isinstance(stop, str) else list(stop or [])
    v.response_schema, v.tool_choice = response_schema(body, "chat"), forced_tool(body, "chat")
    return v


def responses_view(body: dict[str, Any]) -> View:
    v = View()
    sys_parts = [body["instructions"]] if body.get("instructions") else []
    inp = body.get("input")
    items = [{"role": "user", "content": inp}] if isinstance(inp, str) else (inp or [])
    for it in items:
        typ = it.get("type", "message")
        if typ == "message":
            role, content = it.get("role"), it.get("content")
            if role in ("system", "developer"):
                sys_parts.append(_text(content))
            else:
                v.turns.append((role, _text(content)))
                if isinstance(content, list):
                    v.images += sum(
                        1 for p in content if isinstance(p, dict) and p.get("type") == "input_image"
                    )
                v.tool_result = None
        elif typ in ("function_call_output", "custom_tool_call_output"):
            v.tool_result = join_results(v.tool_result, _text(it.get("output")))
    v.system = "\n\n".join(sys_parts)
    index = responses_rules.tool_index(body)  # functions and custom tools, namespaced ones included
    v.tool_names = list(index)
    v.tool_schemas = {name: params for name, (_, _, params) in index.items()}
    v.max_tokens = body.get("max_output_tokens")
    v.response_schema, v.tool_choice = response_schema(body, "responses"), forced_tool(body, "responses")
    return v


CHAT_FIELDS = {
    "model",
    "messages",
    "stream",
    "stream_options",
    "max_tokens",
    "max_completion_tokens",
    "temperature",
    "top_p",
    "n",
    "stop",
    "seed",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "response_format",
    "reasoning_effort",
    "frequency_penalty",
    "presence_penalty",
    "logit_bias",
    "logprobs",
    "top_logprobs",
    "user",
    "service_tier",
    "verbosity",
    "prompt_cache_key",
    "safety_identifier",
    "metadata",
    "store",
    "modalities",
    "audio",
    "prediction",
    "web_search_options",
}


def reasons(model: str) -> bool:
    """Fake model names that reason (like o3 / gpt-5); others refuse reasoning parameters like gpt-4o does."""
    return "reason" in model


def chat_refusal(body: dict[str, Any]) -> web.Response | None:
    """What api.openai.com refuses before running a model: unknown arguments, reasoning_effort on gpt-4o."""
    unknown = sorted(set(body) - CHAT_FIELDS)
    if unknown:
        return _err(400, f"Unrecognized request argument supplied: {unknown[0]}")
    if "reasoning_effort" in body and not reasons(body["model"]):
        return web.json_response(
            {
                "error": {
                    "message": "Unsupported parameter: 'reasoning_effort' is not supported with this model.",
                    "type": "invalid_request_error",
                    "param": "reasoning_effort",
                    "code": "unsupported_parameter",
                }
            },
            status=400,
        )
    return None


_FINISH = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length", "tool_use": "tool_calls"}


class OpenAIUpstream(FakeUpstream):
    def __init__(self, api_key: str = "sk-fake") -> None:
        super().__init__()
        self.api_key = api_key

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/chat/completions", self.chat)
        app.router.add_post("/v1/responses", self.responses)
        app.router.add_get("/v1/models", self.models)
        app.router.add_get("/v1/models/{id}", self.model)

    @property
    def base_url(self) -> str:
        return self.url + "/v1"

    def _auth(self, request: web.Request) -> web.Response | None:
        header = request.headers.get("Authorization", "")
        if header != f"Bearer {self.api_key}":
            shown = header[7:][:4] + "***" if header.startswith("Bearer ") else "none"
            return _err(401, f"Incorrect API key provided: {shown}.", "invalid_api_key")
        return None

    async def _body(self, request: web.Request) -> dict[str, Any] | web.Response:
        try:
            body = await request.json()
        except ValueError:
            return _err(400, "We could not parse the JSON body of your request.")
        if not isinstance(body, dict) or not isinstance(body.get("model"), str):
            return _err(400, "you must provide a model parameter")
        return body

    # ------------------------------------------------------------------ models

    def _model_obj(self, mid: str) -> dict[str, Any]:
        return {"id": mid, "object": "model", "created": 1700000000, "owned_by": "fake"}

    async def models(self, request: web.Request) -> web.StreamResponse:
        return self._auth(request) or web.json_response(
            {"object": "list", "data": [self._model_obj(m) for m in MODELS]}
        )

    async def model(self, request: web.Request) -> web.StreamResponse:
        if (denied := self._auth(request)) is not None:
            return denied
        mid = request.match_info["id"]
        if mid not in MODELS:
            return _err(404, f"The model '{mid}' does not exist", "model_not_found")
        return web.json_response(self._model_obj(mid))

    # ------------------------------------------------------------------ chat completions

    async def chat(self, request: web.Request) -> web.StreamResponse:
        if (denied := self._auth(request)) is not None:
            return denied
        body = await self._body(request)
        if isinstance(body, web.Response):
            return body
        if "messages" not in body:
            return _err(400, "Missing required parameter: 'messages'.")
        if (refused := chat_refusal(body)) is not None:
            return refused
        if vision_rules.refuses(body):
            return _err(*vision_rules.OPENAI)
        p = plan(chat_view(body))
        if p.fail_status:
            return _fail(p)
        cid, created, model = f"chatcmpl-fake{len(self.requests)}", int(time.time()), body["model"]
        usage = {
            "prompt_tokens": p.input_tokens,
            "completion_tokens": p.output_tokens + p.reasoning_tokens,
            "total_tokens": p.input_tokens + p.output_tokens + p.reasoning_tokens,
            "prompt_tokens_details": {"cached_tokens": p.cached_tokens},
            "completion_tokens_details": {"reasoning_tokens": p.reasoning_tokens},
        }
        calls = [
            {
                "id": f"call_fake{n}",
                "type": "function",
                "function": {"name": name, "arguments": json.dumps(args)},
            }
            for n, (name, args) in enumerate(p.calls, 1)
        ]
        if not body.get("stream"):
            msg: dict[str, Any] = {
                "role": "assistant",
                "content": p.text if not calls else None,
                "refusal": None,
            }
            if calls:
                msg["tool_calls"] = calls
            return web.json_response(
                {
                    "id": cid,
                    "object": "chat.completion",
                    "created": created,
                    "model": model,
                    "choices": [
                        {
                            "index": 0,
                            "message": msg,
                            "logprobs": None,
                            "finish_reason": _FINISH[p.stop_reason],
                        }
                    ],
                    "usage": usage,
                    "system_fingerprint": None,
                }
            )

        def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
            return _sse(
                {
                    "id": cid,
                    "object": "chat.completion.chunk",
                    "created": created,
                    "model": model,
                    "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
                }
            )

        frames = [(0.0, chunk({"role": "assistant", "content": ""}))]
        for i, piece in enumerate(p.chunks):
            frames.append((p.delay, chunk({"content": piece})))
            if p.fail_midstream and i == 1:
                frames.append(
                    (
                        0.0,
                        _sse(
                            {
                                "error": {
                                    "message": "scripted mid-stream failure",
                                    "type": "server_error",
                                    "param": None,
                                    "code": None,
                                }
                            }
                        ),
                    )
                )
                return await self.write_stream(request, frames, "text/event-stream")
        for n, call in enumerate(calls):
            args = call["function"]["arguments"]
            half = len(args) // 2
            frames.append(
                (
                    p.delay,
                    chunk(
                        {
                            "tool_calls": [
                                {
                                    "index": n,
                                    "id": call["id"],
                                    "type": "function",
                                    "function": {"name": call["function"]["name"], "arguments": ""},
                                }
                            ]
                        }
                    ),
                )
            )
            for piece in (args[:half], args[half:]):
                frames.append(
                    (p.delay, chunk({"tool_calls": [{"index": n, "function": {"arguments": piece}}]}))
                )
        frames.append((0.0, chunk({}, _FINISH[p.stop_reason])))
        if (body.get("stream_options") or {}).get("include_usage"):
            frames.append(
                (
                    0.0,
                    _sse(
                        {
                            "id": cid,
                            "object": "chat.completion.chunk",
                            "created": created,
                            "model": model,
                            "choices": [],
                            "usage": usage,
                        }
                    ),
                )
            )
        frames.append((0.0, b"data: [DONE]\n\n"))
        return await self.write_stream(request, frames, "text/event-stream")

    # ------------------------------------------------------------------ responses

    async def responses(self, request: web.Request) -> web.StreamResponse:
        if (denied := self._auth(request)) is not None:
            return denied
        body = await self._body(request)
        if isinstance(body, web.Response):
            return body
        if body.get("previous_response_id"):
            return _err(400, "Previous response not found.")
        if (refused := responses_rules.refusal(body) or responses_rules.reasoning_refusal(body)) is not None:
            return _err(400, refused)
        if vision_rules.refuses(body):
            return _err(*vision_rules.OPENAI)
        p = plan(responses_view(body))
        if p.fail_status:
            return _fail(p)
        rid, created, model = f"resp_fake{len(self.requests)}", int(time.time()), body["model"]
        usage = {
            "input_tokens": p.input_tokens,
            "input_tokens_details": {"cached_tokens": p.cached_tokens},
            "output_tokens": p.output_tokens + p.reasoning_tokens,
            "output_tokens_details": {"reasoning_tokens": p.reasoning_tokens},
            "total_tokens": p.input_tokens + p.output_tokens + p.reasoning_tokens,
        }
        status = "incomplete" if p.stop_reason == "max_tokens" else "completed"

        def response(st: str, output: list[Any], error: Any = None) -> dict[str, Any]:
            return {
                "id": rid,
                "object": "response",
                "created_at": created,
                "status": st,
                "model": model,
                "output": output,
                "error": error,
                "usage": usage if st in ("completed", "incomplete") else None,
                "incomplete_details": {"reason": "max_output_tokens"} if st == "incomplete" else None,
                "instructions": body.get("instructions"),
                "tools": body.get("tools", []),
                "tool_choice": body.get("tool_choice", "auto"),
                "parallel_tool_calls": True,
                "temperature": 1.0,
                "top_p": 1.0,
                "metadata": {},
                "text": {"format": {"type": "text"}},
            }

        thought = responses_rules.reasoning_item(body) if reasons(model) and body.get("reasoning") else None
        items: list[dict[str, Any]] = [thought] if thought else []
        if p.tool_call:
            index = responses_rules.tool_index(body)
            items += [
                responses_rules.call_item(name, args, index, n) for n, (name, args) in enumerate(p.calls, 1)
            ]
        else:
            items.append(
                {
                    "id": "msg_fake1",
                    "type": "message",
                    "status": "completed",
                    "role": "assistant",
                    "content": [{"type": "output_text", "text": p.text, "annotations": []}],
                }
            )
        if not body.get("stream"):
            return web.json_response(response(status, items))

        seq = 0

        def ev(typ: str, **data: Any) -> bytes:
            nonlocal seq
            seq += 1
            return _sse({"type": typ, "sequence_number": seq - 1, **data}, typ)

        frames = [
            (0.0, ev("response.created", response=response("in_progress", []))),
            (0.0, ev("response.in_progress", response=response("in_progress", []))),
        ]
        for at, item in enumerate(items):
            if item["type"] == "reasoning":
                frames.append(
                    (0.0, ev("response.output_item.added", output_index=at, item={**item, "summary": []}))
                )
                for si, part in enumerate(item["summary"]):
                    ids = {"item_id": item["id"], "output_index": at, "summary_index": si}
                    frames.append(
                        (
                            0.0,
                            ev(
                                "response.reasoning_summary_part.added",
                                part={"type": "summary_text", "text": ""},
                                **ids,
                            ),
                        )
                    )
                    frames.append(
                        (0.0, ev("response.reasoning_summary_text.delta", delta=part["text"], **ids))
                    )
                    frames.append((0.0, ev("response.reasoning_summary_text.done", text=part["text"], **ids)))
                    frames.append((0.0, ev("response.reasoning_summary_part.done", part=part, **ids)))
            elif item["type"] == "custom_tool_call":
                frames.append(
                    (
                        0.0,
                        ev(
                            "response.output_item.added",
                            output_index=at,
                            item={**item, "status": "in_progress", "input": ""},
                        ),
                    )
                )
                frames.append(
                    (
                        p.delay,
                        ev(
                            "response.custom_tool_call_input.delta",
                            item_id=item["id"],
                            output_index=at,
                            delta=item["input"],
                        ),
                    )
                )
                frames.append(
                    (
                        0.0,
                        ev(
                            "response.custom_tool_call_input.done",
                            item_id=item["id"],
                            output_index=at,
                            input=item["input"],
                        ),
                    )
                )
            elif item["type"] == "function_call":
                frames.append(
                    (
                        0.0,
                        ev(
                            "response.output_item.added",
                            output_index=at,
                            item={**item, "status": "in_progress", "arguments": ""},
                        ),
                    )
                )
                args = item["arguments"]
                for piece in (args[: len(args) // 2], args[len(args) // 2 :]):
                    frames.append(
                        (
                            p.delay,
                            ev(
                                "response.function_call_arguments.delta",
                                item_id=item["id"],
                                output_index=at,
                                delta=piece,
                            ),
                        )
                    )
                frames.append(
                    (
                        0.0,
                        ev(
                            "response.function_call_arguments.done",
                            item_id=item["id"],
                            output_index=at,
                            name=item["name"],
                            arguments=args,
                        ),
                    )
                )
            else:
                ids = {"item_id": "msg_fake1", "output_index": at, "content_index": 0}
                frames.append(
                    (
                        0.0,
                        ev(
                            "response.output_item.added",
                            output_index=at,
                            item={**item, "status": "in_progress", "content": []},
                        ),
                    )
                )
                frames.append(
                    (
                        0.0,
                        ev(
                            "response.content_part.added",
                            part={"type": "output_text", "text": "", "annotations": []},
                            **ids,
                        ),
                    )
                )
                for i, piece in enumerate(p.chunks):
                    frames.append(
                        (p.delay, ev("response.output_text.delta", delta=piece, logprobs=[], **ids))
                    )
                    if p.fail_midstream and i == 1:
                        err = {"code": "server_error", "message": "scripted mid-stream failure"}
                        frames.append((0.0, ev("error", param=None, **err)))
                        frames.append((0.0, ev("response.failed", response=response("failed", [], err))))
                        return await self.write_stream(request, frames, "text/event-stream")
                frames.append((0.0, ev("response.output_text.done", text=p.text, logprobs=[], **ids)))
                frames.append((0.0, ev("response.content_part.done", part=item["content"][0], **ids)))
            frames.append((0.0, ev("response.output_item.done", output_index=at, item=item)))
        frames.append((0.0, ev(f"response.{status}", response=response(status, items))))
        return await self.write_stream(request, frames, "text/event-stream")
