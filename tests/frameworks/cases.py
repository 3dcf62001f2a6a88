"""What every framework test asks and expects, whatever the framework and the upstream behind the gateway.

The fake upstreams run tests/fakes/script.py: "weather" makes the model call the weather tool for Paris
(PARALLEL: Paris and Tokyo in one turn), a tool result is answered "The tool said: <results joined by '; '>",
a response schema or a forced tool call is answered with a value built from the schema (structured.py), and
anything else is echoed as "You said: <prompt> | …".
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from tests.frameworks.stack import Stack

UPSTREAMS = ("openai", "openai-responses", "anthropic", "gemini", "ollama")
CASES = ("text", "stream", "tools", "parallel", "reasoning", "structured", "error", "stream_error")

TEXT_PROMPT = "hello there"
TOOL_PROMPT = "what is the weather?"
PARALLEL_PROMPT = "weather PARALLEL"
JSON_PROMPT = "report as json"
INSTRUCTIONS = "be brief"


class Weather(BaseModel):
    city: str
    temperature_c: int


WEATHER = Weather(city="Paris", temperature_c=21)
TOOL_ANSWER = "The tool said: sunny in Paris"
PARALLEL_ANSWER = "The tool said: sunny in Paris; sunny in Tokyo"


def weather(city: str) -> str:
    """The tool every framework registers: get_weather(city)."""
    return f"sunny in {city}"


def echoed(text: str, prompt: str = TEXT_PROMPT) -> bool:
    return text.startswith(f"You said: {prompt} |")


class Seen:
    """The requests one upstream received from the gateway since a mark (the OpenAI fake serves two APIs)."""

    def __init__(self, stack: Stack, upstream: str) -> None:
        self.fake = stack.fakes[upstream]
        self.upstream = upstream
        self.mark = len(self.fake.requests)  # type: ignore[attr-defined]

    def bodies(self) -> list[dict[str, Any]]:
        path = {
            "openai": "/v1/chat/completions",
            "openai-responses": "/v1/responses",
            "anthropic": "/v1/messages",
            "ollama": "/api/chat",
        }.get(self.upstream)
        out = []
        for r in self.fake.requests[self.mark :]:  # type: ignore[attr-defined]
            if isinstance(r.json, dict) and (r.path == path if path else ":" in r.path):
                out.append(r.json)
        return out

    def reasoning_asked(self) -> bool:
        """Every model call the gateway made asked the upstream to reason, in its own protocol's terms."""
        bodies = self.bodies()
        return bool(bodies) and all(reasons(self.upstream, b) for b in bodies)


def reasons(upstream: str, body: dict[str, Any]) -> bool:
    """The upstream request asks the model to reason, in that protocol's terms."""
    if upstream == "openai":
        return body.get("reasoning_effort") not in (None, "none")
    if upstream == "openai-responses":
        return (body.get("reasoning") or {}).get("effort") not in (None, "none")
    if upstream == "anthropic":
        return (body.get("thinking") or {}).get("type") in ("enabled", "adaptive")
    if upstream == "gemini":
        tc = (body.get("generationConfig") or {}).get("thinkingConfig") or {}
        return tc.get("thinkingBudget") != 0 and bool(tc)
    return body.get("think") not in (None, False)


def status_of(exc: BaseException) -> int | None:
    """The HTTP status a framework's exception carries (on itself or on an exception it wraps)."""
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        for attr in ("status_code", "status", "code"):
            v = getattr(e, attr, None)
            if isinstance(v, int) and 100 <= v < 600:
                return v
        resp = getattr(e, "response", None)
        v = getattr(resp, "status_code", None)
        if isinstance(v, int):
            return v
        e = e.__cause__ or e.__context__
    return None


def assert_upstream_failure(exc: BaseException, exact: bool = True) -> None:
    """A key the upstream rejected is the gateway's upstream failure: a 502 (with `exact=False`, any 5xx a
    framework maps it to), never a 429 that clients retry forever."""
    status = status_of(exc)
    ok = status == 502 if exact else status is not None and 500 <= status < 600
    assert ok, f"{type(exc).__name__} status={status}: {exc}"
    assert "ratelimit" not in type(exc).__name__.lower().replace("_", ""), type(exc).__name__
