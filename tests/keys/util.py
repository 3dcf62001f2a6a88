"""Small helpers for the key tests: raw requests per protocol, and waiting for a finished request's record."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx

CHAT = {"model": "via-openai", "messages": [{"role": "user", "content": "hi"}]}
# protocol → (path, body, how its SDK sends the key)
RAW: dict[str, tuple[str, dict[str, Any], str]] = {
    "openai": ("/v1/chat/completions", CHAT, "bearer"),
    "responses": ("/v1/responses", {"model": "via-openai", "input": "hi"}, "bearer"),
    "anthropic": ("/v1/messages", {**CHAT, "max_tokens": 50}, "x-api-key"),
    "gemini": (
        "/v1beta/models/via-openai:generateContent",
        {"contents": [{"parts": [{"text": "hi"}]}]},
        "x-goog-api-key",
    ),
    "ollama": ("/api/chat", {**CHAT, "stream": False}, "bearer"),
}


def headers(style: str, key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"} if style == "bearer" else {style: key}


def post(url: str, proto: str, key: str) -> httpx.Response:
    path, body, style = RAW[proto]
    return httpx.post(url + path, json=body, headers=headers(style, key), timeout=30)


def wait_for(cond: Callable[[], object], what: str, limit: float = 10.0) -> None:
    """Poll until `cond()` holds (a finished request is counted just after its answer went out)."""
    end = time.monotonic() + limit
    while not cond():
        if time.monotonic() > end:
            raise AssertionError(f"never happened: {what}")
        time.sleep(0.01)


def finished(gw: Any, key_id: str, n: int) -> None:
    """Wait until `n` requests of `key_id` were counted by the gateway's observers."""
    wait_for(lambda: sum(r.key_id == key_id for r in gw.seen.records) >= n, f"{n} requests of {key_id}")
