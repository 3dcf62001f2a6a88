"""An OpenAI Chat fake whose answers wait at a gate: a stream's first chunk goes out at once, the rest (or a whole
answer) only when the test opens the gate named by the last user message. Shutdown tests hold streams open exactly as long as they
need, without timing."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import web

from tests.fakes.harness import FakeUpstream


def _chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
    obj = {
        "id": "chatcmpl-gated",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": "gated-model",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return b"data: " + json.dumps(obj).encode() + b"\n\n"


def _completion() -> dict[str, Any]:
    return {
        "id": "chatcmpl-gated",
        "object": "chat.completion",
        "created": 0,
        "model": "gated-model",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "done"}, "finish_reason": "stop"}
        ],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }


class GatedUpstream(FakeUpstream):
    def __init__(self) -> None:
        super().__init__()
        self._gates: dict[str, asyncio.Event] = {}
        self.started: dict[str, int] = {}  # gate name → streams that sent their first chunk

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/chat/completions", self.chat)

    def _gate(self, name: str) -> asyncio.Event:
        return self._gates.setdefault(name, asyncio.Event())

    def open(self, name: str) -> None:
        """Let every stream waiting at `name` finish (callable from the test's thread)."""
        self._loop.call_soon_threadsafe(lambda: self._gate(name).set())

    async def chat(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        name = str(body["messages"][-1]["content"])
        if not body.get("stream"):
            self.started[name] = self.started.get(name, 0) + 1
            await self._gate(name).wait()
            return web.json_response(_completion())
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        await resp.write(_chunk({"role": "assistant", "content": "first "}))
        self.started[name] = self.started.get(name, 0) + 1
        try:
            await self._gate(name).wait()
            await resp.write(_chunk({"content": "last"}))
            await resp.write(_chunk({}, "stop"))
            await resp.write(b"data: [DONE]\n\n")
            await resp.write_eof()
        except (ConnectionResetError, asyncio.CancelledError):
            self.disconnects += 1
            raise
        return resp
