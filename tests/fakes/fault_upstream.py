"""An OpenAI-compatible fake upstream that injects faults per API key, on command.

Each key has a mode (changeable while running with `set_mode`):

  ok          a normal answer (the OpenAIUpstream script)
  429         429 with `Retry-After: 1`
  429_bare    429 without any hint
  countdown   a request budget of `budget` per `window` seconds, announced on every response with
              x-ratelimit-remaining-requests / -reset-requests; 429 once it is spent
  5xx         500, 502, 503 in turn
  slow        the first byte comes after `slow` seconds (beyond the gateway's first-byte timeout)
  reset       the connection is reset before any response
  die         the response starts (200) and the connection dies before the first event / mid-body
  die_late    streaming: two content chunks reach the client, then the connection dies
  401         the key is rejected

Per key it counts requests, answers, and the most requests in flight at once — the upstream's view, which
is what the pool's guarantees are judged by. (Connect refusals need no server: point a provider at a closed
port.)
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from .openai_upstream import OpenAIUpstream, _err, _sse

EXTRA_HEADERS = web.RequestKey("extra_headers", dict)


@dataclass
class KeyStats:
    requests: int = 0
    ok: int = 0
    in_flight: int = 0
    max_in_flight: int = 0
    throttled: int = 0  # 429s actually sent


class FaultUpstream(OpenAIUpstream):
    def __init__(
        self,
        modes: dict[str, str],
        *,
        slow: float = 1.0,
        budget: int = 20,
        window: float = 2.0,
        hold: float = 0.0,
    ) -> None:
        super().__init__(api_key="")
        self.modes = dict(modes)
        self.stats = {k: KeyStats() for k in modes}
        self.slow, self.budget, self.window, self.hold = slow, budget, window, hold
        self._spent: dict[str, tuple[float, int]] = {}  # key → (window start, used)

    def set_mode(self, key: str, mode: str) -> None:
        self.modes[key] = mode
        self.stats.setdefault(key, KeyStats())

    def routes(self, app: web.Application) -> None:
        super().routes(app)
        app.router.add_get("/_stats", self._stats)
        app.on_response_prepare.append(self._extra_headers)

    async def _stats(self, request: web.Request) -> web.Response:
        """Per-key counters as JSON (for a fake running in another process, e.g. bench/pool.py)."""
        out = {k: vars(v).copy() for k, v in self.stats.items()}
        if request.query.get("reset"):
            self.stats = {k: KeyStats() for k in self.stats}
        return web.json_response(out)

    @staticmethod
    async def _extra_headers(request: web.Request, response: web.StreamResponse) -> None:
        for k, v in request.get(EXTRA_HEADERS, {}).items():
            response.headers[k] = v

    @staticmethod
    def _key(request: web.Request) -> str:
        h = request.headers.get("Authorization", "")
        return h[7:] if h.startswith("Bearer ") else ""

    def _auth(self, request: web.Request) -> web.Response | None:
        if self.modes.get(self._key(request), "401") == "401":
            return _err(401, "Incorrect API key provided.", "invalid_api_key")
        return None

    async def chat(self, request: web.Request) -> web.StreamResponse:
        key = self._key(request)
        st = self.stats.setdefault(key, KeyStats())
        st.requests += 1
        st.in_flight += 1
        st.max_in_flight = max(st.max_in_flight, st.in_flight)
        try:
            if self.hold:
                await asyncio.sleep(self.hold)
            resp = await self._inject(self.modes.get(key, "401"), key, request, st)
            if resp.status == 429:
                st.throttled += 1
            return resp
        finally:
            st.in_flight -= 1

    async def _inject(self, mode: str, key: str, request: web.Request, st: KeyStats) -> web.StreamResponse:
        if mode == "401":
            return _err(401, "Incorrect API key provided.", "invalid_api_key")
        if mode == "429":
            return _err(429, "Rate limit reached", "rate_limit_exceeded", {"Retry-After": "1"})
        if mode == "429_bare":
            return _err(429, "Rate limit reached", "rate_limit_exceeded")
        if mode == "5xx":
            code = (500, 502, 503)[st.requests % 3]
            return _err(code, f"upstream error {code}")
        if mode == "slow":
            await asyncio.sleep(self.slow)
        elif mode == "reset":
            assert request.transport is not None
            request.transport.abort()
            return web.Response(status=500)  # never reaches anyone
        elif mode in ("die", "die_late"):
            return await self._die(request, late=mode == "die_late")
        elif mode == "countdown":
            now = time.time()
            start, used = self._spent.get(key, (now, 0))
            if now - start >= self.window:
                start, used = now, 0
            reset_ms = math.ceil((self.window - (now - start)) * 1000)
            headers = {
                "x-ratelimit-limit-requests": str(self.budget),
                "x-ratelimit-reset-requests": f"{reset_ms}ms",
            }
            if used >= self.budget:
                self._spent[key] = (start, used)
                return _err(
                    429,
                    "Rate limit reached",
                    "rate_limit_exceeded",
                    {**headers, "x-ratelimit-remaining-requests": "0"},
                )
            used += 1
            self._spent[key] = (start, used)
            request[EXTRA_HEADERS] = {**headers, "x-ratelimit-remaining-requests": str(self.budget - used)}
        resp = await super().chat(request)
        if resp.status == 200:
            st.ok += 1
        return resp

    async def _die(self, request: web.Request, late: bool) -> web.StreamResponse:
        body: dict[str, Any] = await request.json()
        assert request.transport is not None
        if body.get("stream"):
            resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await resp.prepare(request)
            if late:
                for delta in (
                    {"role": "assistant", "content": ""},
                    {"content": "Hello "},
                    {"content": "wor"},
                ):
                    await resp.write(
                        _sse(
                            {
                                "id": "chatcmpl-die",
                                "object": "chat.completion.chunk",
                                "created": 0,
                                "model": body.get("model"),
                                "choices": [{"index": 0, "delta": delta, "finish_reason": None}],
                            }
                        )
                    )
                await asyncio.sleep(0.05)  # let the first bytes travel on to the client
        else:
            resp = web.StreamResponse(headers={"Content-Type": "application/json"})
            await resp.prepare(request)
            await resp.write(b'{"id":"chatcmpl-die","object":"chat.completion","choi')
        request.transport.abort()
        return resp


if __name__ == "__main__":  # python -m tests.fakes.fault_upstream '{"key": "mode", …}' → prints the port
    import json
    import sys

    up = FaultUpstream(
        json.loads(sys.argv[1]),
        slow=float(sys.argv[2]) if len(sys.argv) > 2 else 1.0,
        budget=int(sys.argv[3]) if len(sys.argv) > 3 else 20,
    ).start()
    print(up.port, flush=True)
    try:
        sys.stdin.read()  # until the parent closes our stdin
    finally:
        up.stop()
