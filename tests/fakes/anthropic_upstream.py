"""A fake Anthropic Messages server: `/v1/messages` (+ stream) and `/v1/messages/count_tokens`.

Parses the wire request with raw dicts (deliberately independent of smolgate's codec), runs `script.plan`
and renders the plan the way api.anthropic.com does: `event:` lines on every SSE frame, `message_start`
with `content: []`, `ping`, sequential block indices, cumulative usage in `message_delta`, errors as
`{"type":"error","error":{type,message},"request_id"}` (529 `overloaded_error`, in-stream `event: error`).
Auth like the real service: `x-api-key: <key>` or `Authorization: Bearer <key>`; 401 otherwise.
Like the real service it requires the `anthropic-version` header and `max_tokens`, refuses unknown top-level
fields ("Extra inputs are not permitted"), more than 4 `cache_control` markers, thinking on a model whose
name contains "nothink", a `clear_thinking` context edit without thinking, and tool loops that lost their signed
thinking (thinking_rules.py); with thinking on, a reply opens with a signed thinking block. It simulates
prompt caching: each marker's prefix (tools → system → messages) is
remembered; a later request whose marked prefix was seen reads it (`cache_read_input_tokens`), the rest up to
its last marker is written (`cache_creation_input_tokens`); `input_tokens` counts only the remainder.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import secrets
from typing import Any

from aiohttp import web

from . import vision_rules
from .harness import FakeUpstream
from .script import Plan, View, join_results, plan
from .structured import forced_tool, response_schema
from .thinking_rules import Signer, anthropic_thinking_rule
from .tool_rules import anthropic_tool_pairing

ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}


def error_body(status: int, message: str) -> dict[str, Any]:
    return {
        "type": "error",
        "error": {"type": ERROR_TYPES.get(status, "api_error"), "message": message},
        "request_id": "req_" + secrets.token_hex(12),
    }


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(b.get("text", "") for b in content if isinstance(b, dict) and b.get("type") == "text")
    return ""


def build_view(body: dict[str, Any]) -> View:
    v = View(max_tokens=body.get("max_tokens"), stop=list(body.get("stop_sequences") or []))
    v.system = _text_of(body.get("system") or "")
    v.tool_names = [t["name"] for t in body.get("tools") or [] if isinstance(t, dict) and "name" in t]
    v.tool_schemas = {
        t["name"]: t.get("input_schema") or {}
        for t in body.get("tools") or []
        if isinstance(t, dict) and "name" in t
    }
    messages = body.get("messages") or []
    for i, m in enumerate(messages):
        content = m.get("content")
        blocks = content if isinstance(content, list) else []
        v.images += sum(1 for b in blocks if b.get("type") == "image")
        v.turns.append((m["role"], _text_of(content)))
        if i == len(messages) - 1 and m["role"] == "user":
            for b in blocks:
                if b.get("type") == "tool_result":
                    v.tool_result = join_results(v.tool_result, _text_of(b.get("content")))
    v.response_schema, v.tool_choice = response_schema(body, "anthropic"), forced_tool(body, "anthropic")
    return v


KNOWN_FIELDS = {
    "model",
    "messages",
    "max_tokens",
    "system",
    "metadata",
    "stop_sequences",
    "stream",
    "temperature",
    "top_p",
    "top_k",
    "tools",
    "tool_choice",
    "thinking",
    "service_tier",
    "container",
    "mcp_servers",
    "context_management",
    "output_config",
    "output_format",
    "inference_geo",
}


def _prompt_items(body: dict[str, Any]) -> list[dict[str, Any]]:
    """Tools, system blocks and message blocks in Anthropic's cache-prefix order."""
    system = body.get("system")
    items = [t for t in body.get("tools") or [] if isinstance(t, dict)]
    items += [{"type": "text", "text": system}] if isinstance(system, str) else list(system or [])
    for m in body.get("messages") or []:
        c = m.get("content")
        items += (
            [{"type": "text", "text": c}]
            if isinstance(c, str)
            else [b for b in c or [] if isinstance(b, dict)]
        )
    return items


def cache_markers(body: dict[str, Any]) -> int:
    return sum(1 for b in _prompt_items(body) if "cache_control" in b)


def _sse(event: str, data: dict[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n".encode()


class AnthropicUpstream(FakeUpstream):
    def __init__(self, api_key: str = "sk-ant-fake") -> None:
        super().__init__()
        self.api_key = api_key
        self.cached_prefixes: set[str] = set()
        self.usages: list[dict[str, int]] = []  # the usage each /v1/messages reply reported, in order
        self.signer = Signer()  # thinking signatures it issues and checks (thinking_rules.py)

    def reset(self) -> None:
        super().reset()
        self.usages.clear()

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/messages", self.messages)
        app.router.add_post("/v1/messages/count_tokens", self.count_tokens)
        app.router.add_get("/v1/models", self.models)

    # ---------------------------------------------------------------- checks

    def _error(self, status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
        return web.json_response(error_body(status, message), status=status, headers=headers)

    async def _check(
        self, request: web.Request, need_max_tokens: bool
    ) -> tuple[dict[str, Any] | None, web.Response | None]:
        key = request.headers.get("x-api-key")
        auth = request.headers.get("authorization", "")
        if key is None and auth.lower().startswith("bearer "):
            key = auth[7:]
        if key != self.api_key:
            return None, self._error(401, "invalid x-api-key")
        if not request.headers.get("anthropic-version"):
            return None, self._error(400, "anthropic-version: header is required")
        try:
            body = json.loads(await request.read())
        except ValueError:
            return None, self._error(400, "There was an issue with the request body: invalid JSON")
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list) or not body["messages"]:
            return None, self._error(400, "messages: field required")
        if need_max_tokens and not isinstance(body.get("max_tokens"), int):
            return None, self._error(400, "max_tokens: Field required")
        unknown = sorted(set(body) - KNOWN_FIELDS)
        if unknown:
            return None, self._error(400, f"{unknown[0]}: Extra inputs are not permitted")
        if cache_markers(body) > 4:
            return None, self._error(
                400, f"A maximum of 4 blocks with cache_control may be provided. Found {cache_markers(body)}."
            )
        thinking = body.get("thinking") or {}
        if "nothink" in str(body.get("model")) and thinking.get("type") in ("enabled", "adaptive"):
            return None, self._error(400, f"thinking: '{body.get('model')}' does not support thinking")
        edits = (body.get("context_management") or {}).get("edits") or []
        if any(str(e.get("type")).startswith("clear_thinking") for e in edits) and thinking.get(
            "type"
        ) not in ("enabled", "adaptive"):
            return None, self._error(
                400, "context_management: clear_thinking strategy requires thinking to be enabled or adaptive"
            )
        roles = [m.get("role") for m in body["messages"]]
        if roles[0] != "user" or any(a == b for a, b in itertools.pairwise(roles)):
            return None, self._error(
                400, "messages: roles must alternate between user and assistant, starting with user"
            )
        if (unpaired := anthropic_tool_pairing(body["messages"])) is not None:
            return None, self._error(400, unpaired)
        if (unsigned := anthropic_thinking_rule(body, self.signer)) is not None:
            return None, self._error(400, unsigned)
        return body, None

    # ---------------------------------------------------------------- handlers

    async def models(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "data": [
                    {
                        "type": "model",
                        "id": "claude-fake",
                        "display_name": "Claude Fake",
                        "created_at": "2026-01-01T00:00:00Z",
                    }
                ],
                "has_more": False,
                "first_id": "claude-fake",
                "last_id": "claude-fake",
            }
        )

    async def count_tokens(self, request: web.Request) -> web.Response:
        body, err = await self._check(request, need_max_tokens=False)
        if err is not None:
            return err
        return web.json_response({"input_tokens": plan(build_view(body)).input_tokens})  # type: ignore[arg-type]

    async def messages(self, request: web.Request) -> web.StreamResponse:
        body, err = await self._check(request, need_max_tokens=True)
        if err is not None:
            return err
        assert body is not None
        if vision_rules.refuses(body):
            return self._error(*vision_rules.ANTHROPIC)
        p = plan(build_view(body))
        if p.fail_status is not None:
            headers = {"retry-after": "1"} if p.fail_status == 429 else None
            return self._error(p.fail_status, f"scripted failure {p.fail_status}", headers)
        msg_id = "msg_" + secrets.token_hex(12)
        model = body.get("model", "")
        usage = self._usage(body, p)
        self.usages.append(usage)
        thinking = self._thinking(body)
        if body.get("stream"):
            return await self.write_stream(
                request, self._frames(p, msg_id, model, usage, thinking), "text/event-stream"
            )
        content: list[dict[str, Any]] = [thinking] if thinking else []
        if p.text:
            content.append({"type": "text", "text": p.text})
        for name, args in p.calls:
            content.append(
                {"type": "tool_use", "id": "toolu_" + secrets.token_hex(8), "name": name, "input": args}
            )
        return web.json_response(
            {
                "id": msg_id,
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": content,
                "stop_reason": p.stop_reason,
                "stop_sequence": p.stop_sequence,
                "usage": {**usage, "output_tokens": p.output_tokens + p.reasoning_tokens},
            }
        )

    def _usage(self, body: dict[str, Any], p: Plan) -> dict[str, int]:
        """Prompt usage with the cache simulated (words stand for tokens once any marker is present)."""
        items = _prompt_items(body)
        if not any("cache_control" in b for b in items):
            return {
                "input_tokens": p.input_tokens - p.cached_tokens,
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": p.cached_tokens,
            }
        digest, words, read, last = hashlib.sha256(), 0, 0, 0
        marks: list[str] = []
        for b in items:
            plain = {k: v for k, v in b.items() if k != "cache_control"}
            digest.update(json.dumps(plain, sort_keys=True).encode())
            words += len(json.dumps(plain).split())
            if "cache_control" in b:
                key = digest.copy().hexdigest()
                marks.append(key)
                last = words
                if key in self.cached_prefixes:
                    read = words
        self.cached_prefixes.update(marks)
        return {
            "input_tokens": words - last,
            "cache_creation_input_tokens": last - read,
            "cache_read_input_tokens": read,
        }

    def _thinking(self, body: dict[str, Any]) -> dict[str, Any] | None:
        """With thinking on, a reply opens with a signed thinking block (its text unique to the reply)."""
        if (body.get("thinking") or {}).get("type") not in ("enabled", "adaptive"):
            return None
        text = f"Thinking it over ({secrets.token_hex(4)})."
        return {"type": "thinking", "thinking": text, "signature": self.signer.sign(text)}

    def _frames(
        self, p: Plan, msg_id: str, model: str, usage: dict[str, int], thinking: dict[str, Any] | None = None
    ) -> list[tuple[float, bytes]]:
        frames: list[tuple[float, bytes]] = [
            (
                0.0,
                _sse(
                    "message_start",
                    {
                        "type": "message_start",
                        "message": {
                            "id": msg_id,
                            "type": "message",
                            "role": "assistant",
                            "model": model,
                            "content": [],
                            "stop_reason": None,
                            "stop_sequence": None,
                            "usage": {**usage, "output_tokens": 1},
                        },
                    },
                ),
            ),
            (0.0, _sse("ping", {"type": "ping"})),
        ]
        index = 0
        if thinking is not None:
            start = {**thinking, "thinking": "", "signature": ""}
            frames += [
                (
                    0.0,
                    _sse(
                        "content_block_start",
                        {"type": "content_block_start", "index": 0, "content_block": start},
                    ),
                ),
                (
                    0.0,
                    _sse(
                        "content_block_delta",
                        {
                            "type": "content_block_delta",
                            "index": 0,
                            "delta": {"type": "thinking_delta", "thinking": thinking["thinking"]},
                        },
                    ),
                ),
                (
                    0.0,
                    _sse(
                        "content_block_delta",
                        {
                            "type": "content_block_delta",
                            "index": 0,
                            "delta": {"type": "signature_delta", "signature": thinking["signature"]},
                        },
                    ),
                ),
                (0.0, _sse("content_block_stop", {"type": "content_block_stop", "index": 0})),
            ]
            index = 1
        if p.chunks:
            frames.append(
                (
                    0.0,
                    _sse(
                        "content_block_start",
                        {
                            "type": "content_block_start",
                            "index": index,
                            "content_block": {"type": "text", "text": ""},
                        },
                    ),
                )
            )
            for chunk in p.chunks[:2] if p.fail_midstream else p.chunks:
                frames.append(
                    (
                        p.delay,
                        _sse(
                            "content_block_delta",
                            {
                                "type": "content_block_delta",
                                "index": index,
                                "delta": {"type": "text_delta", "text": chunk},
                            },
                        ),
                    )
                )
            if p.fail_midstream:
                frames.append(
                    (
                        p.delay,
                        _sse(
                            "error",
                            {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
                        ),
                    )
                )
                return frames
            frames.append((0.0, _sse("content_block_stop", {"type": "content_block_stop", "index": index})))
            index += 1
        for name, args in p.calls:
            frames.append(
                (
                    0.0,
                    _sse(
                        "content_block_start",
                        {
                            "type": "content_block_start",
                            "index": index,
                            "content_block": {
                                "type": "tool_use",
                                "id": "toolu_" + secrets.token_hex(8),
                                "name": name,
                                "input": {},
                            },
                        },
                    ),
                )
            )
            text = json.dumps(args)
            for part in (text[: len(text) // 2], text[len(text) // 2 :]):
                frames.append(
                    (
                        p.delay,
                        _sse(
                            "content_block_delta",
                            {
                                "type": "content_block_delta",
                                "index": index,
                                "delta": {"type": "input_json_delta", "partial_json": part},
                            },
                        ),
                    )
                )
            frames.append((0.0, _sse("content_block_stop", {"type": "content_block_stop", "index": index})))
            index += 1
        frames.append(
            (
                0.0,
                _sse(
                    "message_delta",
                    {
                        "type": "message_delta",
                        "delta": {"stop_reason": p.stop_reason, "stop_sequence": p.stop_sequence},
                        "usage": {**usage, "output_tokens": p.output_tokens + p.reasoning_tokens},
                    },
                ),
            )
        )
        frames.append((0.0, _sse("message_stop", {"type": "message_stop"})))
        return frames
